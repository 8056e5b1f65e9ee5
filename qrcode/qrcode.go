// Package qrcode draws QR codes with github.com/skip2/go-qrcode: the setup
// wizard shows the otpauth:// URL of a new TOTP secret as one, for the
// authenticator app to scan.
package qrcode

import (
	"errors"
	"fmt"

	qr "github.com/skip2/go-qrcode"
)

// PNG returns text as a QR code in a square PNG image of size pixels (at
// least 64; 256 suits a phone camera at arm's length). Error correction is
// medium (15%), which keeps the modules large enough for an otpauth URL.
func PNG(text string, size int) ([]byte, error) {
	if text == "" {
		return nil, errors.New("qr code: nothing to encode")
	}
	if size < 64 {
		return nil, fmt.Errorf("qr code: size %d pixels is too small to scan (at least 64)", size)
	}
	png, err := qr.Encode(text, qr.Medium, size)
	if err != nil {
		return nil, fmt.Errorf("qr code: %w", err)
	}
	return png, nil
}
