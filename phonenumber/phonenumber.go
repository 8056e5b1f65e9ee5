// Package phonenumber reads the phone numbers people type into the one form SMS
// providers take, E.164 ("+447700900123"), with Google's libphonenumber metadata
// (github.com/nyaruka/phonenumbers): international input with a leading +,
// national input in a default region ("07700 900123" in GB), every country's
// rules. It also masks numbers for display ("+44 ••• ••• 0123").
package phonenumber

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"

	"github.com/hestami/hestami/auth"
)

// MaxInput is the longest input Normalize reads; longer input is refused before
// parsing (a phone number, even with spaces and punctuation, is far shorter).
const MaxInput = 64

// Numbers implements auth.PhoneNumbers with the package's functions.
type Numbers struct{}

var _ auth.PhoneNumbers = Numbers{}

// Normalize is the package's Normalize.
func (Numbers) Normalize(raw, defaultRegion string) (string, error) {
	return Normalize(raw, defaultRegion)
}

// Mask is the package's Mask.
func (Numbers) Mask(e164 string) string { return Mask(e164) }

// refusedTypes are numbers that never receive a code: premium-rate and
// shared-cost numbers are how SMS toll fraud ("SMS pumping") earns money from
// the sender, and toll-free, UAN and voicemail numbers are not people's phones.
// Fixed lines are accepted: some take SMS (as speech), and in many countries
// (the US, Canada) mobile and fixed numbers cannot be told apart.
var refusedTypes = map[phonenumbers.PhoneNumberType]string{
	phonenumbers.PREMIUM_RATE: "a premium-rate number",
	phonenumbers.SHARED_COST:  "a shared-cost number",
	phonenumbers.TOLL_FREE:    "a toll-free number",
	phonenumbers.UAN:          "a company switchboard number",
	phonenumbers.VOICEMAIL:    "a voicemail access number",
}

// Normalize returns raw in E.164 form. raw is what a person typed: "+1 (415)
// 555-2671", "00 44 7700 900123", or a national number ("07700 900123") read in
// defaultRegion, an ISO 3166-1 alpha-2 code ("GB"; any case; empty means the
// number must start with +). Numbers that are not valid for their country, have
// an extension, or are premium-rate, shared-cost, toll-free, switchboard or
// voicemail numbers are refused.
//
// Errors are *auth.Error with CodeInvalid and a message for the person that says
// what is wrong and how to type the number.
func Normalize(raw, defaultRegion string) (string, error) {
	s := strings.TrimSpace(raw)
	switch {
	case s == "":
		return "", auth.Errorf(auth.CodeInvalid, "Enter your mobile phone number, starting with + and the country code (like +44 7911 123456).")
	case len(s) > MaxInput || !utf8.ValidString(s):
		return "", auth.Errorf(auth.CodeInvalid, "That is not a phone number. Enter your mobile number, starting with + and the country code (like +44 7911 123456).")
	}
	region := strings.ToUpper(strings.TrimSpace(defaultRegion))
	if region != "" && !phonenumbers.GetSupportedRegions()[region] {
		region = ""
	}
	if region == "" && strings.HasPrefix(s, "00") {
		s = "+" + s[2:] // the international call prefix of most of the world
	}
	if region == "" && !strings.HasPrefix(s, "+") {
		return "", auth.Errorf(auth.CodeInvalid, "Start the number with + and the country code (like +44 7911 123456), or choose your country.")
	}
	n, err := phonenumbers.Parse(s, region)
	if err != nil {
		msg := "%q is not a phone number we can read. Enter your mobile number, starting with + and the country code (like +44 7911 123456)."
		if err == phonenumbers.ErrInvalidCountryCode {
			msg = "%q does not start with a country code we know. Enter it with + and the country code (like +44 7911 123456)."
		}
		return "", auth.Errorf(auth.CodeInvalid, msg, s).WithCause(err)
	}
	if n.GetExtension() != "" {
		return "", auth.Errorf(auth.CodeInvalid, "%q has an extension; text messages cannot reach an extension. Enter a mobile number.", s)
	}
	if !phonenumbers.IsValidNumber(n) {
		return "", auth.Errorf(auth.CodeInvalid, "%q is not a valid phone number (country code +%d). Check the digits and the country code.", s, n.GetCountryCode())
	}
	if what, refused := refusedTypes[phonenumbers.GetNumberType(n)]; refused {
		return "", auth.Errorf(auth.CodeInvalid, "%q is %s, which cannot receive codes. Enter your mobile number.", s, what)
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

// Mask shows e164 the way a person recognises their own number without showing
// it to someone looking over their shoulder: the country code and the last four
// digits, "+1 ••• ••• 1234". Input that is not E.164 keeps only its last two
// characters.
func Mask(e164 string) string {
	n, err := phonenumbers.Parse(e164, "")
	if err != nil || !strings.HasPrefix(e164, "+") {
		r := []rune(e164)
		if len(r) <= 4 {
			return "•••"
		}
		return "••• " + string(r[len(r)-2:])
	}
	cc := "+" + strconv.Itoa(int(n.GetCountryCode()))
	nsn := phonenumbers.GetNationalSignificantNumber(n)
	if len(nsn) <= 6 { // short numbers: four digits would be most of it
		return cc + " ••• " + nsn[max(0, len(nsn)-2):]
	}
	return cc + " ••• ••• " + nsn[len(nsn)-4:]
}
