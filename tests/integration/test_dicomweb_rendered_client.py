"""WADO-RS rendered with a real client: ``dicomweb-client`` (PyPI) against the app served over
TLS, the radiologist's session cookie in its ``requests`` session."""

from __future__ import annotations

import io
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import dicomweb_client
import pytest
import requests
from PIL import Image

from imaging_web_world import imaging_clinic
from live_app import serve
from secretum.web.deps import SESSION_COOKIE
from web_world import WebWorld


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebWorld, str, Path]]:
    tmp = tmp_path_factory.mktemp("dicomweb-client")
    world = imaging_clinic(tmp)
    with serve(world.app, tmp) as url:
        yield world, url, tmp / "cert.pem"


def _client(site: tuple[WebWorld, str, Path], who: str | None) -> Any:
    world, url, cert = site
    session = requests.Session()
    session.trust_env = False  # no CA bundle from the environment: the server's certificate
    session.verify = str(cert)
    if who is not None:
        # (a cookie jar keeps no cookie for a host without a dot: the header, as a browser sends)
        session.headers["cookie"] = f"{SESSION_COOKIE}={world.users[who].session_id}"
    return dicomweb_client.DICOMwebClient(url=f"{url}/dicomweb", session=session)


def test_rendered_instance_frames_and_series(site: tuple[WebWorld, str, Path]) -> None:
    world = site[0]
    client = _client(site, "radio")
    study, series = world.ids["study:nocare"], world.ids["series:nocare"]
    sop = world.ids["sops:nocare"][4]
    png = client.retrieve_instance_rendered(study, series, sop, media_types=("image/png",))
    assert Image.open(io.BytesIO(png)).size == (128, 128)
    jpeg = client.retrieve_instance_frames_rendered(
        study,
        series,
        sop,
        frame_numbers=[1],
        media_types=("image/jpeg",),
        params={"window": "-600,1500,linear", "viewport": "64,64"},
    )
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.size == (64, 64)
    body = client.retrieve_series_rendered(study, series, media_types=("image/png",))
    # a whole series: the client hands back the multipart/related body as it came
    boundary = body.split(b"\r\n", 1)[0][2:]
    head = b'Content-Type: multipart/related; boundary="' + boundary + b'"\r\n\r\n'
    parts = [p.get_payload(decode=True) for p in message_from_bytes(head + body).get_payload()]
    assert len(parts) == 12 and all(p.startswith(b"\x89PNG") for p in parts)


@pytest.mark.parametrize("who", ["gp", None])
def test_refused_clients(site: tuple[WebWorld, str, Path], who: str | None) -> None:
    world = site[0]
    client = _client(site, who)
    study, series = world.ids["study:nocare"], world.ids["series:nocare"]
    with pytest.raises(requests.HTTPError) as caught:
        client.retrieve_instance_rendered(
            study, series, world.ids["sops:nocare"][0], media_types=("image/png",)
        )
    assert caught.value.response.status_code == (401 if who is None else 404)
