// Package webauthntest is a software WebAuthn authenticator together with the
// browser's part of a ceremony, for tests: it answers the options package
// webauthn sends (the JSON a page hands to navigator.credentials.create or
// .get) with the JSON a browser would send back, signing with ECDSA P-256 keys it
// keeps in memory (attestation "none"). Unlike a browser it enforces nothing
// about origins: its knobs let a test play a phishing page or a cloned key.
package webauthntest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// ErrExcluded is returned by Create when the authenticator holds one of the
// options' excluded credentials (a browser's InvalidStateError).
var ErrExcluded = errors.New("webauthntest: the authenticator holds an excluded credential")

// ErrNoCredential is returned by Get when the authenticator holds none of the
// allowed credentials (a browser's NotAllowedError).
var ErrNoCredential = errors.New("webauthntest: no allowed credential on this authenticator")

// Authenticator is a software authenticator and the browser using it.
// Its fields are read at each ceremony; set them before, not during one.
type Authenticator struct {
	// Origin is the origin the browser writes into clientDataJSON: the page's.
	Origin string
	// RPID, when set, replaces the options' relying party ID in the
	// authenticator data's RP ID hash (a phishing page asking for its own).
	RPID string
	// NoUserVerification leaves the UV flag unset (a key without a PIN).
	NoUserVerification bool

	mu    sync.Mutex
	creds []*Credential
}

// Credential is a key pair the authenticator holds for one relying party and
// user. Counter is the signature counter of its last use: a test may set it
// (lower, to play a cloned key) between ceremonies.
type Credential struct {
	ID         []byte
	RPID       string
	UserHandle []byte
	Key        *ecdsa.PrivateKey
	Counter    uint32
}

// New returns an authenticator whose browser is at origin
// (http://localhost:8080).
func New(origin string) *Authenticator {
	return &Authenticator{Origin: origin}
}

// Credentials returns the credentials created so far, oldest first.
func (a *Authenticator) Credentials() []*Credential {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*Credential(nil), a.creds...)
}

// Add gives the authenticator a credential created elsewhere (another
// authenticator's, to play a stolen credential id).
func (a *Authenticator) Add(c *Credential) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.creds = append(a.creds, c)
}

type descriptor struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type creationOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RP        struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"rp"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
		Params []struct {
			Type string `json:"type"`
			Alg  int64  `json:"alg"`
		} `json:"pubKeyCredParams"`
		Exclude []descriptor `json:"excludeCredentials"`
	} `json:"publicKey"`
}

type requestOptions struct {
	PublicKey struct {
		Challenge string       `json:"challenge"`
		RPID      string       `json:"rpId"`
		Allow     []descriptor `json:"allowCredentials"`
	} `json:"publicKey"`
}

// Create answers navigator.credentials.create(options): it makes a new P-256
// credential and returns the PublicKeyCredential as JSON.
func (a *Authenticator) Create(options []byte) ([]byte, error) {
	var o creationOptions
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, fmt.Errorf("webauthntest: creation options: %w", err)
	}
	pk := o.PublicKey
	if pk.Challenge == "" || pk.RP.ID == "" || pk.User.ID == "" {
		return nil, errors.New("webauthntest: creation options without challenge, rp.id or user.id")
	}
	es256 := false
	for _, p := range pk.Params {
		es256 = es256 || (p.Type == "public-key" && p.Alg == int64(webauthncose.AlgES256))
	}
	if !es256 {
		return nil, errors.New("webauthntest: the options do not allow ES256")
	}
	userHandle, err := decode(pk.User.ID)
	if err != nil {
		return nil, fmt.Errorf("webauthntest: user.id: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ex := range pk.Exclude {
		id, err := decode(ex.ID)
		if err != nil {
			return nil, fmt.Errorf("webauthntest: excludeCredentials: %w", err)
		}
		for _, c := range a.creds {
			if bytes.Equal(c.ID, id) {
				return nil, ErrExcluded
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	c := &Credential{ID: make([]byte, 32), RPID: pk.RP.ID, UserHandle: userHandle, Key: key}
	_, _ = rand.Read(c.ID)
	point, err := key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		return nil, err
	}
	cose, err := webauthncbor.Marshal(webauthncose.EC2PublicKeyData{
		PublicKeyData: webauthncose.PublicKeyData{KeyType: int64(webauthncose.EllipticKey), Algorithm: int64(webauthncose.AlgES256)},
		Curve:         int64(webauthncose.P256), XCoord: point[1:33], YCoord: point[33:65],
	})
	if err != nil {
		return nil, fmt.Errorf("webauthntest: cose key: %w", err)
	}
	var attested bytes.Buffer
	attested.Write(make([]byte, 16)) // AAGUID: none
	_ = binary.Write(&attested, binary.BigEndian, uint16(len(c.ID)))
	attested.Write(c.ID)
	attested.Write(cose)
	authData := a.authData(pk.RP.ID, flagAT, 0, attested.Bytes())
	attObj, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": authData})
	if err != nil {
		return nil, fmt.Errorf("webauthntest: attestation object: %w", err)
	}
	clientData := a.clientData("webauthn.create", pk.Challenge)
	a.creds = append(a.creds, c)
	return json.Marshal(map[string]any{
		"id": encode(c.ID), "rawId": encode(c.ID), "type": "public-key", "authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON": encode(clientData), "attestationObject": encode(attObj), "transports": []string{"internal"},
		},
		"clientExtensionResults": map[string]any{},
	})
}

// Get answers navigator.credentials.get(options) with the first allowed
// credential it holds (any of its credentials for the relying party if the
// options allow any): its counter goes up by one, and it signs.
func (a *Authenticator) Get(options []byte) ([]byte, error) {
	var o requestOptions
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, fmt.Errorf("webauthntest: request options: %w", err)
	}
	pk := o.PublicKey
	if pk.Challenge == "" || pk.RPID == "" {
		return nil, errors.New("webauthntest: request options without challenge or rpId")
	}
	a.mu.Lock()
	c, err := a.pick(pk.RPID, pk.Allow)
	if err != nil {
		a.mu.Unlock()
		return nil, err
	}
	c.Counter++
	counter := c.Counter
	a.mu.Unlock()
	return a.Sign(c, pk.RPID, pk.Challenge, counter)
}

// Sign returns the assertion of c over challenge (base64url, as in the options)
// for rpID, with counter as its signature counter, without changing c.Counter:
// for tests that replay or forge.
func (a *Authenticator) Sign(c *Credential, rpID, challenge string, counter uint32) ([]byte, error) {
	authData := a.authData(rpID, 0, counter, nil)
	clientData := a.clientData("webauthn.get", challenge)
	sum := sha256.Sum256(clientData)
	digest := sha256.Sum256(append(append([]byte{}, authData...), sum[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, c.Key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": encode(c.ID), "rawId": encode(c.ID), "type": "public-key", "authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON": encode(clientData), "authenticatorData": encode(authData),
			"signature": encode(sig), "userHandle": encode(c.UserHandle),
		},
		"clientExtensionResults": map[string]any{},
	})
}

func (a *Authenticator) pick(rpID string, allow []descriptor) (*Credential, error) {
	for _, c := range a.creds {
		if c.RPID != rpID && a.RPID == "" {
			continue
		}
		if len(allow) == 0 {
			return c, nil
		}
		for _, d := range allow {
			if id, err := decode(d.ID); err == nil && bytes.Equal(id, c.ID) {
				return c, nil
			}
		}
	}
	return nil, ErrNoCredential
}

// The authenticator data flags (WebAuthn §6.1).
const (
	flagUP = 0x01
	flagUV = 0x04
	flagAT = 0x40
)

func (a *Authenticator) authData(rpID string, flags byte, counter uint32, attested []byte) []byte {
	if a.RPID != "" {
		rpID = a.RPID
	}
	flags |= flagUP
	if !a.NoUserVerification {
		flags |= flagUV
	}
	h := sha256.Sum256([]byte(rpID))
	out := append(h[:], flags)
	out = binary.BigEndian.AppendUint32(out, counter)
	return append(out, attested...)
}

func (a *Authenticator) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.Origin, "crossOrigin": false})
	return b
}

func encode(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decode(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
