// The sign-in Auth.js (next-auth v5) does with a generic OIDC provider, through
// oauth4webapi, the library it uses: discovery, authorization code with PKCE
// (S256), state and nonce, the token request with client_secret_basic, the ID
// token's checks, userinfo and a refresh.
//
// Protocol (the Go test drives the browser part): the script prints one JSON line
// {"authorize": URL}, reads one line from stdin (the URL the browser was sent back
// to), and prints one JSON line with the outcome, or fails with exit status 1.
import { pathToFileURL } from "node:url"
import { createInterface } from "node:readline"

const env = (name) => {
	const v = process.env[name]
	if (!v) throw new Error(`${name} not set`)
	return v
}
const o = await import(pathToFileURL(env("OAUTH4WEBAPI") + "/node_modules/oauth4webapi/build/index.js").href)
const insecure = { [o.allowInsecureRequests]: true } // http://localhost in the test
const issuer = new URL(env("ISSUER"))
const client = { client_id: env("CLIENT_ID") }
const clientAuth = o.ClientSecretBasic(env("CLIENT_SECRET"))
const redirectURI = env("REDIRECT_URI")

const as = await o.processDiscoveryResponse(issuer, await o.discoveryRequest(issuer, insecure))
const verifier = o.generateRandomCodeVerifier()
const state = o.generateRandomState()
const nonce = o.generateRandomNonce()
const authURL = new URL(as.authorization_endpoint)
for (const [k, v] of Object.entries({
	client_id: client.client_id, redirect_uri: redirectURI, response_type: "code",
	scope: "openid profile email offline_access", state, nonce,
	code_challenge: await o.calculatePKCECodeChallenge(verifier), code_challenge_method: "S256",
})) authURL.searchParams.set(k, v)
console.log(JSON.stringify({ authorize: authURL.href }))

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
const callback = new URL((await lines.next()).value)

const params = o.validateAuthResponse(as, client, callback, state)
const tokens = await o.processAuthorizationCodeResponse(as, client,
	await o.authorizationCodeGrantRequest(as, client, clientAuth, params, redirectURI, verifier, insecure),
	{ expectedNonce: nonce, requireIdToken: true })
const claims = o.getValidatedIdTokenClaims(tokens)
const userinfo = await o.processUserInfoResponse(as, client, claims.sub,
	await o.userInfoRequest(as, client, tokens.access_token, insecure))
const refreshed = await o.processRefreshTokenResponse(as, client,
	await o.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, insecure))
const refreshedClaims = o.getValidatedIdTokenClaims(refreshed)

console.log(JSON.stringify({
	claims, userinfo,
	rotated: refreshed.refresh_token !== tokens.refresh_token && !!refreshed.refresh_token,
	refreshedSub: refreshedClaims?.sub,
	accessToken: refreshed.access_token,
}))
process.exit(0)
