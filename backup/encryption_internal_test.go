package backup

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, rs := range [][]string{
		{"age1qqqq"},
		{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"},
		slices.Repeat([]string{strings.Repeat("x", maxRecipientLen)}, maxRecipients),
	} {
		h, err := encodeHeader(rs)
		if err != nil {
			t.Fatal(err)
		}
		got, n, err := parseHeader(append(h, "age-encryption.org/v1\n"...))
		if err != nil || n != len(h) || !slices.Equal(got, rs) {
			t.Fatalf("parseHeader(encodeHeader(%d recipients)) = %d recipients, %d, %v; header %d bytes", len(rs), len(got), n, err, len(h))
		}
		if len(rs) == 2 && len(h) > 160 {
			t.Errorf("a header for two recipients takes %d bytes", len(h))
		}
	}
	for _, rs := range [][]string{nil, {""}, {"has space"}, {"tab\there"}, {strings.Repeat("x", maxRecipientLen+1)}, slices.Repeat([]string{"a"}, maxRecipients+1)} {
		if _, err := encodeHeader(rs); err == nil {
			t.Errorf("encodeHeader(%q) succeeded", rs)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	h, _ := encodeHeader([]string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"})
	f.Add(h)
	f.Add(append(bytes.Clone(h), "age-encryption.org/v1\n"...))
	f.Add(h[:len(h)-1])
	f.Add([]byte(encMagic))
	f.Add([]byte(encMagic + "\x00"))
	f.Add([]byte(encMagic + "\x02\x01a"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, n, err := parseHeader(b)
		if err != nil {
			if rs != nil || n != 0 {
				t.Fatalf("error %v with %d recipients, length %d", err, len(rs), n)
			}
			return
		}
		if n > len(b) || n > maxHeaderSize || len(rs) == 0 || len(rs) > maxRecipients {
			t.Fatalf("length %d of %d, %d recipients", n, len(b), len(rs))
		}
		// What parses is exactly what encodeHeader writes for those recipients.
		again, err := encodeHeader(rs)
		if err != nil {
			t.Fatalf("parsed recipients %q do not encode: %v", rs, err)
		}
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoded header differs:\n%x\n%x", again, b[:n])
		}
	})
}

func TestSignatureMessageBindsEverything(t *testing.T) {
	sum := bytes.Repeat([]byte{1}, 32)
	base := signatureMessage("wal/00000001/a.zst", 10, sum)
	other := bytes.Repeat([]byte{2}, 32)
	for name, m := range map[string][]byte{
		"key":  signatureMessage("wal/00000001/b.zst", 10, sum),
		"size": signatureMessage("wal/00000001/a.zst", 11, sum),
		"sum":  signatureMessage("wal/00000001/a.zst", 10, other),
		// A key and size that run into each other must not collide.
		"boundary": signatureMessage("wal/00000001/a.zst\x00", 10, sum),
	} {
		if bytes.Equal(m, base) {
			t.Errorf("changing the %s leaves the signed message unchanged", name)
		}
	}
	if !bytes.HasPrefix(base, []byte(signatureDomain)) {
		t.Error("the message lacks its domain separator")
	}
}
