package webauthn

import _ "embed" // Script

// Script is the browser side of passkeys for the auth service's pages, to serve
// as /assets/webauthn.js (Content-Type text/javascript; it is a plain script, no
// module, no inline code, so it runs under a Content-Security-Policy of
// default-src 'self'). Pages load it with
//
//	<script src="/assets/webauthn.js" defer></script>
//
// and mark up each passkey action (adding one, or using one at a challenge or
// step-up) as an ordinary form:
//
//	<form method="post" action="FINISH" data-webauthn-begin="BEGIN" hidden>
//	  <input type="hidden" name="csrf" value="…">
//	  <!-- any other fields: the passkey's name, "remember this device"… -->
//	  <p data-webauthn-status role="status" aria-live="polite"></p>
//	  <button type="submit">Use a passkey</button>
//	</form>
//	<p data-webauthn-fallback>Passkeys need JavaScript… Use another method.</p>
//
// What the script does:
//
//   - If the browser supports WebAuthn it shows the forms (removes hidden) and
//     hides every element marked data-webauthn-fallback; otherwise it does
//     nothing, so people without JavaScript or passkeys only see the fallback
//     text and the page's other methods.
//   - On submit it POSTs the form's fields (URL-encoded, so the csrf field goes
//     along; same-origin cookies; Accept: application/json) to the
//     data-webauthn-begin URL. That endpoint calls Passkeys.BeginRegistration or
//     BeginAssertion and answers 200 with
//     {"ceremony": "<ceremony id>", "options": <the options JSON as returned>},
//     or an error status with the API's {"error": {"code", "message"}} body,
//     whose message the script shows in the data-webauthn-status element (or an
//     alert if the form has none).
//   - Options with publicKey.user are a registration
//     (navigator.credentials.create), others an assertion
//     (navigator.credentials.get); the script turns their base64url fields into
//     ArrayBuffers.
//   - With the authenticator's answer it sets two hidden fields of the form,
//     creating them if the markup has none: "ceremony" (the id) and "response"
//     (the PublicKeyCredential as JSON, binary fields base64url), then submits
//     the form normally to its action. That FINISH handler is an ordinary
//     form POST (check csrf, call FinishRegistration or FinishAssertion with the
//     two fields, set cookies, redirect or render), so the result page works
//     like every other page.
//   - A cancelled prompt, a timeout or an error shows a message in the status
//     element and leaves the form ready to try again.
//
//go:embed assets/webauthn.js
var Script []byte
