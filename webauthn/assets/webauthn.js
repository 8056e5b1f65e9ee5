// Passkeys for Hestami's pages: progressive enhancement of plain forms.
// See the doc comment of Script in package webauthn (webauthn/script.go) for the
// markup this expects. Everything else on the pages works without JavaScript.
(function () {
  'use strict';

  function toB64url(buf) {
    var bytes = new Uint8Array(buf), s = '';
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function fromB64url(s) {
    s = String(s).replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      var out = Object.assign({}, d);
      out.id = fromB64url(d.id);
      return out;
    });
  }

  // publicKeyOptions turns the server's JSON options (binary fields in
  // base64url) into what navigator.credentials wants (ArrayBuffers).
  function publicKeyOptions(pk) {
    var out = Object.assign({}, pk);
    out.challenge = fromB64url(pk.challenge);
    if (pk.user) {
      out.user = Object.assign({}, pk.user, { id: fromB64url(pk.user.id) });
      out.excludeCredentials = descriptors(pk.excludeCredentials);
    } else {
      out.allowCredentials = descriptors(pk.allowCredentials);
    }
    return out;
  }

  // credentialJSON is the PublicKeyCredential as JSON, binary fields in
  // base64url (the WebAuthn Level 3 RegistrationResponseJSON /
  // AuthenticationResponseJSON shapes).
  function credentialJSON(cred) {
    var r = cred.response, response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      response.transports = typeof r.getTransports === 'function' ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) response.userHandle = toB64url(r.userHandle);
    }
    var out = {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: response,
      clientExtensionResults: typeof cred.getClientExtensionResults === 'function' ? cred.getClientExtensionResults() : {}
    };
    if (cred.authenticatorAttachment) out.authenticatorAttachment = cred.authenticatorAttachment;
    return JSON.stringify(out);
  }

  function field(form, name) {
    var input = form.querySelector('input[name="' + name + '"]');
    if (!input) {
      input = document.createElement('input');
      input.type = 'hidden';
      input.name = name;
      form.appendChild(input);
    }
    return input;
  }

  function say(form, message) {
    var status = form.querySelector('[data-webauthn-status]');
    if (status) {
      status.textContent = message;
    } else if (message) {
      window.alert(message);
    }
  }

  function busy(form, on) {
    form.setAttribute('aria-busy', on ? 'true' : 'false');
    Array.prototype.forEach.call(form.querySelectorAll('button, input[type="submit"]'), function (b) {
      b.disabled = on;
    });
  }

  var messages = {
    NotAllowedError: 'The passkey request was cancelled or timed out. Try again, or use another method.',
    InvalidStateError: 'This passkey is registered for your account already.',
    SecurityError: 'Passkeys cannot be used on this address. Open the site at its usual address and try again.',
    NotSupportedError: 'This device has no passkey that works here. Try another device or security key, or use another method.',
    TypeError: 'The server could not be reached. Check your connection and try again.'
  };

  async function run(form) {
    var body = new URLSearchParams(new FormData(form));
    body.delete('ceremony');
    body.delete('response');
    var res = await fetch(form.getAttribute('data-webauthn-begin'), {
      method: 'POST',
      body: body,
      credentials: 'same-origin',
      headers: { Accept: 'application/json' }
    });
    var data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok || !data || !data.options || !data.options.publicKey) {
      throw new Error(data && data.error && data.error.message ? data.error.message : 'Passkeys are not available right now. Try again, or use another method.');
    }
    var pk = publicKeyOptions(data.options.publicKey);
    var cred = pk.user ? await navigator.credentials.create({ publicKey: pk }) : await navigator.credentials.get({ publicKey: pk });
    if (!cred) throw new Error(messages.NotAllowedError);
    field(form, 'ceremony').value = data.ceremony;
    field(form, 'response').value = credentialJSON(cred);
    say(form, 'Checking…');
    HTMLFormElement.prototype.submit.call(form);
  }

  function start() {
    var supported = !!(window.PublicKeyCredential && navigator.credentials && window.fetch && window.URLSearchParams);
    if (!supported) return;
    Array.prototype.forEach.call(document.querySelectorAll('[data-webauthn-fallback]'), function (el) {
      el.hidden = true;
    });
    Array.prototype.forEach.call(document.querySelectorAll('form[data-webauthn-begin]'), function (form) {
      form.hidden = false;
      form.addEventListener('submit', function (event) {
        event.preventDefault();
        if (form.getAttribute('aria-busy') === 'true') return;
        busy(form, true);
        say(form, 'Follow your browser’s prompt to use your passkey…');
        run(form).catch(function (err) {
          busy(form, false);
          say(form, (err && messages[err.name]) || (err && err.message) || 'That did not work. Try again, or use another method.');
        });
      });
    });
  }

  // Coming back to the page (the browser's back button) finds the forms usable.
  window.addEventListener('pageshow', function () {
    Array.prototype.forEach.call(document.querySelectorAll('form[data-webauthn-begin][aria-busy="true"]'), function (form) {
      busy(form, false);
      say(form, '');
    });
  });

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
