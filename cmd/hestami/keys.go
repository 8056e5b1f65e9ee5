package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/age"
	"github.com/hestami/hestami/backup"
)

func (p *Program) keysCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create encryption and signing keys (see docs/keys.md)",
	}
	cmd.AddCommand(p.keysGenerateCommand())
	return cmd
}

// generatedKey is what keys generate --json prints.
type generatedKey struct {
	Type       string `json:"type"` // age or signing
	PublicKey  string `json:"public_key"`
	PrivateKey string `json:"private_key"`
}

func (p *Program) keysGenerateCommand() *cobra.Command {
	var signing, asJSON bool
	var output string
	cmd := &cobra.Command{
		Use:   "generate [--signing] [--output FILE]",
		Short: "Print a new key pair: an age encryption key, or an ed25519 signing key",
		Long: `Prints a new key pair as a key file: comment lines with the creation time and the
public key, then the private key.

  (default)  an age X25519 identity (AGE-SECRET-KEY-1...) and its recipient (age1...).
             The recipient goes into HESTAMI_ENCRYPTION_RECIPIENTS on every host that
             pushes; the file is the HESTAMI_ENCRYPTION_IDENTITY_FILE of the hosts that
             restore, fetch WAL or verify. The file is a standard age identity file.
  --signing  an ed25519 signing key (hestami-sign-key:...) and its public key
             (hestami-sign-pub:...). The file is HESTAMI_SIGNING_KEY_FILE on the pushing
             hosts; the public key goes into HESTAMI_SIGNING_PUBLIC_KEYS where backups
             are restored and verified.

With --output the file is created with mode 0600 (never overwritten); the public key is
printed on stderr either way. See docs/keys.md for rotation.`,
		Example: `  hestami keys generate --output /etc/hestami/identity.key
  hestami keys generate --signing --output /etc/hestami/signing.key
  hestami keys generate --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			now := time.Now()
			var k generatedKey
			var text string
			if signing {
				sk, err := backup.GenerateSigningKey()
				if err != nil {
					return err
				}
				text = string(sk.Encode(now))
				k = generatedKey{Type: "signing", PublicKey: sk.Public(), PrivateKey: lastLine(text)}
			} else {
				kp, err := age.Generate()
				if err != nil {
					return err
				}
				text = kp.File(now)
				k = generatedKey{Type: "age", PublicKey: kp.Recipient, PrivateKey: kp.Identity}
			}
			if output != "" {
				f, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return fmt.Errorf("write the key: %w (an existing key file is never overwritten)", err)
				}
				if _, err := f.WriteString(text); err != nil {
					f.Close()
					return fmt.Errorf("write the key: %w", err)
				}
				if err := f.Close(); err != nil {
					return fmt.Errorf("write the key: %w", err)
				}
			}
			switch {
			case asJSON:
				return p.printJSON(k)
			case output == "":
				fmt.Fprint(p.Stdout, text)
			}
			where := "HESTAMI_ENCRYPTION_RECIPIENTS"
			if signing {
				where = "HESTAMI_SIGNING_PUBLIC_KEYS"
			}
			fmt.Fprintf(p.Stderr, "Public key: %s (add it to %s)\n", k.PublicKey, where)
			return nil
		},
	}
	cmd.Flags().BoolVar(&signing, "signing", false, "an ed25519 signing key instead of an age encryption key")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the key file here (mode 0600) instead of stdout")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (public and private key)")
	return cmd
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}

// secureRepository gives repo the configured encryption and signing keys. Private
// keys are read only when first used: a push never reads the identity file, a
// restore never the signing key.
func (p *Program) secureRepository(repo *backup.Repository) error {
	enc, sig := p.cfg.Encryption, p.cfg.Signing
	if len(enc.Recipients) > 0 {
		e, err := age.NewEncrypter(enc.Recipients)
		if err != nil {
			return fmt.Errorf("encryption.recipients (HESTAMI_ENCRYPTION_RECIPIENTS): %w", err)
		}
		repo.Encrypter = e
	}
	if enc.IdentityFile != "" {
		repo.Decrypter = age.IdentityFile(enc.IdentityFile)
	}
	if sig.KeyFile != "" {
		repo.Signer = &backup.SigningKeyFile{Path: sig.KeyFile}
	}
	if len(sig.PublicKeys) > 0 {
		tk, err := backup.ParseTrustedKeys(sig.PublicKeys)
		if err != nil {
			return fmt.Errorf("signing.public_keys (HESTAMI_SIGNING_PUBLIC_KEYS): %w", err)
		}
		repo.Verifier = tk
		if p.allowUnsigned || sig.AllowUnsigned {
			repo.AllowUnsigned = true
			if !p.warnedUnsigned {
				p.warnedUnsigned = true
				by := "--allow-unsigned"
				if !p.allowUnsigned {
					by = "signing.allow_unsigned"
				}
				p.logger.Warn("signature verification is relaxed: unsigned objects are accepted, each with a warning", "by", by)
			}
		}
	}
	return nil
}

// globalFlags returns the flags a command hestami runs on its own behalf (the
// restore_command) must repeat.
func (p *Program) globalFlags() []string {
	if p.allowUnsigned {
		return []string{"--allow-unsigned"}
	}
	return nil
}

// checkRestoreKeys fails before a restore writes anything when a file of backup m
// or the first WAL segment it needs cannot be decrypted with the configured
// identities.
func checkRestoreKeys(ctx context.Context, repo, walRepo *backup.Repository, m *backup.Manifest, dir string) error {
	keys := make([]string, 0, len(m.Files))
	for _, f := range m.Files {
		keys = append(keys, backup.BackupKey(m.ID, f.Name))
	}
	err := repo.CheckDecryptable(ctx, keys...)
	if err == nil {
		if segs, serr := backup.BackupSegments(m); serr == nil && len(segs) > 0 {
			err = walRepo.CheckDecryptable(ctx, backup.WALKey(segs[0]))
		}
	}
	if err != nil {
		return fmt.Errorf("restore of backup %s stopped before writing anything to %s: %w", m.ID, dir, err)
	}
	return nil
}

// keyProblem returns the error of the first backup (of type t; "": any) whose
// manifest cannot be read for want of a key or a trusted signature: choosing among
// the others would silently pass over it.
func keyProblem(entries []backup.BackupEntry, t backup.Type) error {
	for _, e := range entries {
		if t != "" && backup.IDType(e.ID) != t {
			continue
		}
		if e.Status == backup.StatusUnreadable && (errors.Is(e.Err, backup.ErrWrongKey) || errors.Is(e.Err, backup.ErrUntrusted)) {
			return fmt.Errorf("backup %s: %w", e.ID, e.Err)
		}
	}
	return nil
}
