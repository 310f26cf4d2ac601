"""The call page's key agreement and chat sealing, in real Chromium (``/static/call-keys.js``,
``/static/call-chat.js`` served by a real ``secretum serve --dev``), with the signaling relay
played by the test: commit before reveal, the same safety code and mirrored keys on every
side, a substituted key refused, stale messages of an earlier round ignored; the safety code and
the KIDs agree with the Python reference; chat messages that are altered, replayed or sealed
under another key do not open."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_rig import CHROMIUM, CHROMIUM_ARGS, require_chromium, start_server, stop_server

from secretum.crypto.sframe import safety_code, transcript

pytestmark = pytest.mark.browser

# window.K (call-keys.js), window.C (call-chat.js), and a relay of "key" messages between
# participants that the test can hold, drop, reorder or tamper with.
_PRELUDE = """async () => {
  window.K = await import('/static/call-keys.js');
  window.C = await import('/static/call-chat.js');
  window.hex = (b) =>
    Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
  window.sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // A participant: its CallKeys, what it sent, its epochs and failures.
  window.party = (pid, relay, test = {}) => {
    const p = {pid, sent: [], epochs: [], failures: []};
    p.keys = new K.CallKeys({
      send: (m) => { p.sent.push(m); relay(pid, m); },
      onEpoch: (e) => p.epochs.push(e),
      onFailure: (r) => p.failures.push(r),
      test: {quietMs: 30, ...test},
    });
    return p;
  };
  window.summary = (p) => ({
    failures: p.failures, epochs: p.epochs.length,
    code: p.epochs.at(-1)?.code ?? null,
    transcript: p.epochs.at(-1) ? hex(p.epochs.at(-1).transcript) : null,
    peers: Object.fromEntries([...(p.epochs.at(-1)?.peers ?? [])].map(([pid, k]) =>
      [pid, {kids: k.kids, send: hex(k.sendKey), receive: hex(k.receiveKey)}])),
    sent: p.sent.map((m) => m.commitment ? 'C' : 'K'),
  });
  return true;
}"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    server = start_server(tmp_path_factory.mktemp("callkeys"), "data")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    *CHROMIUM_ARGS,
                    f"--ignore-certificate-errors-spki-list={server.spki_hash()}",
                ],
            )
            page = browser.new_context().new_page()
            page.set_default_timeout(60_000)
            page.goto(server.url + "/sign-in")
            assert page.evaluate(_PRELUDE)
            yield page
            browser.close()
    finally:
        stop_server(server)


def test_two_and_three_parties_agree(page: Any) -> None:
    """Every side gets the same code; my send key is the peer's receive key under the same
    KID; the two directions differ; a join makes a new epoch (new keys, new KIDs, new code)."""
    result = page.evaluate(
        """async () => {
      const parties = {};
      const relay = (from, m) => setTimeout(() => {
        for (const p of Object.values(parties)) if (p.pid !== from) p.keys.receive(from, m);
      }, Math.random() * 10);
      parties.a = party('a', relay); parties.b = party('b', relay);
      parties.a.keys.setRoster(['b']); parties.b.keys.setRoster(['a']);
      await sleep(400);
      const two = [summary(parties.a), summary(parties.b)];
      parties.c = party('c', relay);
      parties.a.keys.setRoster(['b', 'c']); parties.b.keys.setRoster(['a', 'c']);
      parties.c.keys.setRoster(['a', 'b']);
      await sleep(400);
      return {two, three: [summary(parties.a), summary(parties.b), summary(parties.c)]};
    }"""
    )
    a, b = result["two"]
    assert a["failures"] == b["failures"] == []
    assert a["code"] == b["code"] and len(a["code"]) == 6
    assert a["sent"] == b["sent"] == ["C", "K"]  # commitment first, then the key
    assert a["peers"]["b"]["send"] == b["peers"]["a"]["receive"]
    assert a["peers"]["b"]["receive"] == b["peers"]["a"]["send"]
    assert a["peers"]["b"]["send"] != a["peers"]["b"]["receive"]
    kids_a, kids_b = a["peers"]["b"]["kids"], b["peers"]["a"]["kids"]
    assert kids_a["send"] == kids_b["receive"] and kids_a["receive"] == kids_b["send"]
    assert kids_a["send"] != kids_a["receive"]
    # The Python reference computes the same code from the same transcript.
    assert safety_code(bytes.fromhex(a["transcript"])) == a["code"]

    a3, b3, c3 = result["three"]
    assert a3["failures"] == b3["failures"] == c3["failures"] == []
    assert a3["code"] == b3["code"] == c3["code"] != a["code"]
    assert a3["peers"]["c"]["send"] == c3["peers"]["a"]["receive"]
    assert b3["peers"]["c"]["receive"] == c3["peers"]["b"]["send"]
    assert a3["peers"]["b"]["kids"]["send"] != kids_a["send"]  # a new epoch, a new KID
    assert a3["peers"]["b"]["send"] != a["peers"]["b"]["send"]
    keys = [bytes.fromhex(k) for k in _keys_of(a3["transcript"])]
    assert len(keys) == 3 and transcript(keys).hex() == a3["transcript"]


def _keys_of(transcript_hex: str) -> list[str]:
    data, out = bytes.fromhex(transcript_hex), []
    while data:
        n = int.from_bytes(data[:2], "big")
        out.append(data[2 : 2 + n].hex())
        data = data[2 + n :]
    return out


def test_no_reveal_before_every_commitment(page: Any) -> None:
    """A participant keeps its key until it holds the other's commitment: with b's messages
    held back, a sends its commitment only."""
    result = page.evaluate(
        """async () => {
      const parties = {};
      const held = [];
      const relay = (from, m) => {
        if (from === 'b') { held.push(m); return; }
        setTimeout(() => parties.b.keys.receive(from, m), 1);
      };
      parties.a = party('a', relay); parties.b = party('b', relay);
      parties.a.keys.setRoster(['b']); parties.b.keys.setRoster(['a']);
      await sleep(300);
      const before = summary(parties.a).sent;
      for (const m of held.splice(0)) parties.a.keys.receive('b', m);
      await sleep(300);
      return {before, a: summary(parties.a), b: summary(parties.b)};
    }"""
    )
    assert result["before"] == ["C"]
    assert result["a"]["code"] == result["b"]["code"] is not None


def test_a_substituted_key_is_refused(page: Any) -> None:
    """A relay in the middle that swaps b's revealed key for its own (committed or not) gets
    a mismatch on a's side, never an epoch."""
    result = page.evaluate(
        """async () => {
      const mallory = await crypto.subtle.generateKey(
        {name: 'ECDH', namedCurve: 'P-256'}, true, ['deriveBits']);
      const raw = await crypto.subtle.exportKey('raw', mallory.publicKey);
      const fake = K.b64url(new Uint8Array(raw));
      const parties = {};
      const relay = (from, m) => setTimeout(() => {
        const out = from === 'b' && m.public_key ? {type: 'key', public_key: fake} : m;
        for (const p of Object.values(parties)) if (p.pid !== from) p.keys.receive(from, out);
      }, 1);
      parties.a = party('a', relay); parties.b = party('b', relay);
      parties.a.keys.setRoster(['b']); parties.b.keys.setRoster(['a']);
      await sleep(300);
      return {a: summary(parties.a), b: summary(parties.b)};
    }"""
    )
    assert result["a"]["failures"] == ["mismatch"] and result["a"]["epochs"] == 0


@pytest.mark.parametrize("gap", [5, 60])
def test_stale_messages_of_a_past_round_are_ignored(page: Any, gap: int) -> None:
    """b's commitment and key of an old round reach a after a has moved to a new round (in
    b's order, as the server relays them), before or after a's quiet period: no mismatch, and
    the new round agrees (a start-over if a had revealed already)."""
    result = page.evaluate(
        """async (gap) => {
      const parties = {};
      let hold = true;
      const late = [];
      const relay = (from, m) => {
        if (hold && from === 'b') { late.push(m); return; }
        setTimeout(() => {
          for (const p of Object.values(parties)) if (p.pid !== from) p.keys.receive(from, m);
        }, 1);
      };
      parties.a = party('a', relay); parties.b = party('b', relay);
      parties.a.keys.setRoster(['b']); parties.b.keys.setRoster(['a']);
      await sleep(200);   // b committed and (a's commitment in hand) revealed: both held
      parties.a.keys.setRoster(['b']); parties.b.keys.setRoster(['a']);  // a new round
      await sleep(gap);   // b's new commitment (and key, once a's commitment is in): held too
      hold = false;
      for (const m of late) parties.a.keys.receive('b', m);  // all of b's, in b's order
      await sleep(600);
      return {a: summary(parties.a), b: summary(parties.b)};
    }""",
        gap,
    )
    a, b = result["a"], result["b"]
    assert a["failures"] == [] and b["failures"] == []
    assert a["code"] == b["code"] is not None
    assert a["peers"]["b"]["send"] == b["peers"]["a"]["receive"]


def test_wrong_key_hook_breaks_decryption_only(page: Any) -> None:
    """The test hook: a participant forced to a wrong key has a receive key that matches
    nothing (its frames will not decrypt), the same code (its public keys are honest)."""
    result = page.evaluate(
        """async () => {
      const parties = {};
      const relay = (from, m) => setTimeout(() => {
        for (const p of Object.values(parties)) if (p.pid !== from) p.keys.receive(from, m);
      }, 1);
      parties.a = party('a', relay, {wrongKey: true}); parties.b = party('b', relay);
      parties.a.keys.setRoster(['b']); parties.b.keys.setRoster(['a']);
      await sleep(300);
      return {a: summary(parties.a), b: summary(parties.b)};
    }"""
    )
    a, b = result["a"], result["b"]
    assert a["code"] == b["code"] is not None
    assert a["peers"]["b"]["receive"] != b["peers"]["a"]["send"]
    assert a["peers"]["b"]["send"] == b["peers"]["a"]["receive"]


def test_chat_messages_open_once_and_only_untouched(page: Any) -> None:
    result = page.evaluate(
        """async () => {
      const shared = crypto.getRandomValues(new Uint8Array(32));
      const t = crypto.getRandomValues(new Uint8Array(70));
      const sealKey = await C.deriveChatKey(shared, t, 'alice', ['encrypt']);
      const openKey = await C.deriveChatKey(shared, t, 'alice', ['decrypt']);
      const otherKey = await C.deriveChatKey(shared, t, 'bob', ['decrypt']);
      const sealer = new C.ChatSealer(41, sealKey);
      const opener = new C.ChatOpener();
      opener.add(41, openKey);
      const outcome = async (data, o = opener) => {
        try { return C.decode(await o.open(data)); } catch (e) { return 'refused'; }
      };
      const m1 = await sealer.seal(C.encodeJson({t: 'text', body: 'bonjour'}));
      const chunk = C.encodeChunk(new Uint8Array(16).fill(7), 3, new Uint8Array([1, 2, 3]));
      const m2 = await sealer.seal(chunk);
      const tampered = m2.slice(); tampered[tampered.length - 1] ^= 1;
      const movedKid = m2.slice(); movedKid[4] ^= 1;
      const other = new C.ChatOpener(); other.add(41, otherKey);
      return {
        clear: new TextDecoder().decode(m1).includes('bonjour'),
        first: await outcome(m1),
        tampered: await outcome(tampered),
        movedKid: await outcome(movedKid),
        wrongKey: await outcome(m2, other),
        second: await outcome(m2),
        replayed: await outcome(m1),
        nonces: hex(m1.slice(13, 25)) !== hex(m2.slice(13, 25)),
      };
    }"""
    )
    assert result["clear"] is False
    assert result["first"] == {"kind": "json", "value": {"t": "text", "body": "bonjour"}}
    assert result["tampered"] == result["movedKid"] == result["wrongKey"] == "refused"
    assert result["second"]["kind"] == "chunk" and result["second"]["index"] == 3
    assert result["second"]["id"] == "07" * 16
    assert result["replayed"] == "refused"
    assert result["nonces"] is True


def test_a_commitment_after_my_reveal_makes_me_start_over(page: Any) -> None:
    """b's old round reaches a just after a's new round starts, b's new commitment only after
    a's quiet period: a has revealed against the stale commitment, so it starts over with a new
    key pair (never pairs its revealed key with a later commitment); the sides still agree."""
    result = page.evaluate(
        """async () => {
      const parties = {};
      let hold = 'all';
      const late = [];
      const relay = (from, m) => {
        if (hold && from === 'b') { late.push(m); return; }
        setTimeout(() => {
          for (const p of Object.values(parties)) if (p.pid !== from) p.keys.receive(from, m);
        }, 1);
      };
      parties.a = party('a', relay); parties.b = party('b', relay);
      parties.a.keys.setRoster(['b']); parties.b.keys.setRoster(['a']);
      await sleep(200);
      const old = late.splice(0);        // b's round-1 commitment and key
      parties.a.keys.setRoster(['b']); parties.b.keys.setRoster(['a']);
      for (const m of old) parties.a.keys.receive('b', m);
      await sleep(150);                  // a's quiet period (30 ms) ends: a reveals
      hold = false;
      for (const m of late.splice(0)) parties.a.keys.receive('b', m);
      await sleep(800);
      return {a: summary(parties.a), b: summary(parties.b)};
    }"""
    )
    a, b = result["a"], result["b"]
    assert a["failures"] == [] and b["failures"] == []
    assert a["code"] == b["code"] is not None
    assert a["peers"]["b"]["send"] == b["peers"]["a"]["receive"]
    assert a["sent"].count("C") >= 3  # round 1, round 2, and a start-over
