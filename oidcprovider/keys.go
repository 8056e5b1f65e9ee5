package oidcprovider

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// signingKey is a private key with its JOSE algorithm and key id.
type signingKey struct {
	id  string
	alg jose.SignatureAlgorithm
	key crypto.Signer
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey is a signingKey's public half, as published in the JWKS.
type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return p.k.alg }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return p.k.key.Public() }

var (
	_ op.SigningKey = (*signingKey)(nil)
	_ op.Key        = publicKey{}
)

// newSigningKey wraps a parsed private key: RSA (RS256, at least 2048 bits) or
// ECDSA P-256 (ES256). The key id is the key's JWK thumbprint (RFC 7638), so the
// same key always has the same id.
func newSigningKey(priv any) (*signingKey, error) {
	var alg jose.SignatureAlgorithm
	var signer crypto.Signer
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits: want at least 2048", k.N.BitLen())
		}
		alg, signer = jose.RS256, k
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ECDSA key on %s: want P-256 (ES256)", k.Curve.Params().Name)
		}
		alg, signer = jose.ES256, k
	default:
		return nil, fmt.Errorf("key of type %T: want an RSA or ECDSA P-256 private key", priv)
	}
	jwk := jose.JSONWebKey{Key: signer.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("key thumbprint: %w", err)
	}
	return &signingKey{id: base64.RawURLEncoding.EncodeToString(tp), alg: alg, key: signer}, nil
}

// readKeyFile reads a PEM private key: PKCS #8 ("PRIVATE KEY"), PKCS #1 ("RSA
// PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY").
func readKeyFile(path string) (*signingKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("signing key %s: no PEM block (want a PEM private key, e.g. from openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072)", path)
	}
	var priv any
	switch block.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("signing key %s: PEM block %q: want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	k, err := newSigningKey(priv)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}

func parseStoredKey(s *StoredKey) (*signingKey, error) {
	priv, err := x509.ParsePKCS8PrivateKey(s.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("stored signing key %s: %w", s.ID, err)
	}
	k, err := newSigningKey(priv)
	if err != nil {
		return nil, fmt.Errorf("stored signing key %s: %w", s.ID, err)
	}
	if k.id != s.ID || string(k.alg) != s.Algorithm {
		return nil, fmt.Errorf("stored signing key %s: it is a %s key with id %s", s.ID, k.alg, k.id)
	}
	return k, nil
}

// loadKeys returns the key to sign with and every key to publish. With a key
// file, that is the only key; otherwise the newest stored key signs (one is
// generated and stored the first time) and all stored keys are published, so
// tokens signed before a rotation stay verifiable.
func loadKeys(ctx context.Context, store Store, file string, now time.Time) (*signingKey, []*signingKey, error) {
	if file != "" {
		k, err := readKeyFile(file)
		if err != nil {
			return nil, nil, err
		}
		return k, []*signingKey{k}, nil
	}
	stored, err := store.SigningKeys(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("load signing keys: %w", err)
	}
	if len(stored) == 0 {
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, nil, fmt.Errorf("generate signing key: %w", err)
		}
		k, err := newSigningKey(priv)
		if err != nil {
			return nil, nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, nil, fmt.Errorf("encode signing key: %w", err)
		}
		if _, err := store.EnsureSigningKey(ctx, &StoredKey{ID: k.id, Algorithm: string(k.alg), PrivateKey: der, CreatedAt: now}); err != nil {
			return nil, nil, fmt.Errorf("store signing key: %w", err)
		}
		if stored, err = store.SigningKeys(ctx); err != nil {
			return nil, nil, fmt.Errorf("load signing keys: %w", err)
		}
	}
	var all []*signingKey
	for _, s := range stored {
		k, err := parseStoredKey(s)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, k)
	}
	if len(all) == 0 {
		return nil, nil, fmt.Errorf("load signing keys: none stored")
	}
	return all[0], all, nil
}
