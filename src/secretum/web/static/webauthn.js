// WebAuthn ceremonies for Secretum pages. Loaded as a module; no inline script (strict CSP).
//
// A button declares its ceremony with data attributes:
//   data-webauthn="create" | "get"      registration or authentication
//   data-options="/url"  data-verify="/url"  where to fetch options and post the result
//   data-name-input="#id"               (create) the input holding the credential's name
//   data-form="#id"                     (get) a form whose fields are sent with the options
//   data-status="#id"                   where to write progress and errors (aria-live)
// The browser's own errors (a DOMException, in the browser's language, e.g. "This is an invalid
// domain") are shown in the page's words: #webauthn-messages (base.html) holds them by name.
// The server answers {"options": <PublicKeyCredential*OptionsJSON>, "ceremony": "<id>"} and,
// after verification, {"next": "/url"} or {"error": "<message>"}.

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function b64urlToBuffer(value) {
  const pad = "=".repeat((4 - (value.length % 4)) % 4);
  const raw = atob((value + pad).replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0)).buffer;
}

function bufferToB64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let raw = "";
  for (const b of bytes) raw += String.fromCharCode(b);
  return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function creationOptions(json) {
  return {
    ...json,
    challenge: b64urlToBuffer(json.challenge),
    user: { ...json.user, id: b64urlToBuffer(json.user.id) },
    excludeCredentials: (json.excludeCredentials ?? []).map((c) => ({ ...c, id: b64urlToBuffer(c.id) })),
  };
}

function requestOptions(json) {
  return {
    ...json,
    challenge: b64urlToBuffer(json.challenge),
    allowCredentials: (json.allowCredentials ?? []).map((c) => ({ ...c, id: b64urlToBuffer(c.id) })),
  };
}

function credentialToJSON(cred) {
  const r = cred.response;
  const response = { clientDataJSON: bufferToB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = bufferToB64url(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  }
  if (r.authenticatorData) response.authenticatorData = bufferToB64url(r.authenticatorData);
  if (r.signature) response.signature = bufferToB64url(r.signature);
  if (r.userHandle) response.userHandle = bufferToB64url(r.userHandle);
  return {
    id: cred.id,
    rawId: bufferToB64url(cred.rawId),
    type: cred.type,
    response,
    clientExtensionResults: cred.getClientExtensionResults(),
    authenticatorAttachment: cred.authenticatorAttachment ?? null,
  };
}

async function post(url, body) {
  const res = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  // Our own refusals come translated ({"error": …}); anything else gets the generic message.
  if (!res.ok) throw new ServerError(data.error || "");
  return data;
}

// DOMException name → data attribute of #webauthn-messages.
const BROWSER_ERRORS = {
  NotAllowedError: "notAllowed",
  SecurityError: "security",
  InvalidStateError: "invalidState",
  NotSupportedError: "notSupported",
  AbortError: "notAllowed",
  ConstraintError: "notSupported",
};

class ServerError extends Error {}

function explain(err) {
  const messages = document.getElementById("webauthn-messages")?.dataset ?? {};
  if (err instanceof ServerError) return err.message || messages.server || "Error";
  const key = BROWSER_ERRORS[err && err.name];
  return (key && messages[key]) || messages.other || (err && err.message) || String(err);
}

async function run(button) {
  const status = document.querySelector(button.dataset.status || "#webauthn-status");
  const say = (text, isError = false) => {
    if (!status) return;
    status.textContent = text;
    status.className = isError ? "error" : "hint";
  };
  if (!window.PublicKeyCredential) {
    say(button.dataset.unsupported || "WebAuthn unavailable", true);
    return;
  }
  button.disabled = true;
  try {
    const extra = {};
    if (button.dataset.form) {
      for (const [k, v] of new FormData(document.querySelector(button.dataset.form))) extra[k] = v;
    }
    const { options, ceremony } = await post(button.dataset.options, extra);
    say(button.dataset.waiting || "…");
    let credential;
    if (button.dataset.webauthn === "create") {
      credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
    } else {
      credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
    }
    const nameInput = button.dataset.nameInput ? document.querySelector(button.dataset.nameInput) : null;
    const result = await post(button.dataset.verify, {
      ceremony,
      credential: credentialToJSON(credential),
      name: nameInput ? nameInput.value : undefined,
    });
    if (result.next) window.location.assign(result.next);
    else say(result.message || "OK");
  } catch (err) {
    say(explain(err), true);
  } finally {
    button.disabled = false;
  }
}

for (const button of document.querySelectorAll("[data-webauthn]")) {
  button.addEventListener("click", (event) => {
    event.preventDefault();
    run(button);
  });
}
