package phonenumber_test

import (
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/phonenumber"
)

func TestNormalize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, raw, region, want string
	}{
		{"USInternational", "+1 (415) 555-2671", "", "+14155552671"},
		{"USNational", "(415) 555-2671", "US", "+14155552671"},
		{"USNationalWithTrunk", "1 415 555 2671", "US", "+14155552671"},
		{"RegionLowerCase", "415.555.2671", "us", "+14155552671"},
		{"GBMobileNational", "07911 123456", "GB", "+447911123456"},
		{"GBMobileInternational", "+44 7911 123456", "US", "+447911123456"},
		{"InternationalIgnoresRegion", "+33 6 12 34 56 78", "GB", "+33612345678"},
		{"IDDPrefix", "00 33 6 12 34 56 78", "", "+33612345678"},
		{"GermanMobile", "0151 23456789", "DE", "+4915123456789"},
		{"IndiaMobile", "+91 98765 43210", "", "+919876543210"},
		{"JapanMobile", "090-1234-5678", "JP", "+819012345678"},
		{"BrazilMobile", "+55 11 91234-5678", "", "+5511912345678"},
		{"FixedLineAccepted", "020 7946 0018", "GB", "+442079460018"},
		{"Surrounded", "  +44 7911 123456\t", "", "+447911123456"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := phonenumber.Normalize(tc.raw, tc.region)
			if err != nil || got != tc.want {
				t.Fatalf("Normalize(%q, %q) = %q, %v; want %q", tc.raw, tc.region, got, err, tc.want)
			}
		})
	}
}

func TestNormalizeRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, raw, region, says string
	}{
		{"Empty", "", "US", "Enter your mobile phone number"},
		{"Letters", "not a number", "US", "not a phone number"},
		{"NationalWithoutRegion", "07911 123456", "", "Start the number with + and the country code"},
		{"UnknownRegionIsNoRegion", "07911 123456", "XX", "Start the number with +"},
		{"UnknownCountryCode", "+999 1234 5678", "", "country code we know"},
		{"TooShort", "+44 7700", "", "not a valid phone number"},
		{"TooLong", "+1 415 555 2671 2671 2671", "", "not"},
		{"InvalidDigits", "+1 415 555 267", "", "not a valid phone number"},
		{"Extension", "+1 415 555 2671 ext. 12", "", "extension"},
		{"PremiumRate", "0909 8790000", "GB", "premium-rate"},
		{"TollFree", "+1 800 234 5678", "", "toll-free"},
		{"HugeInput", "+1" + strings.Repeat("5", 500), "", "not a phone number"},
		{"InvalidUTF8", "+1 415\xff555 2671", "", "not a phone number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := phonenumber.Normalize(tc.raw, tc.region)
			if err == nil {
				t.Fatalf("Normalize(%q, %q) = %q, want an error", tc.raw, tc.region, got)
			}
			if auth.ErrorCode(err) != auth.CodeInvalid || !strings.Contains(auth.ErrorMessage(err), tc.says) {
				t.Errorf("Normalize(%q, %q) = %v (code %s); want CodeInvalid saying %q", tc.raw, tc.region, err, auth.ErrorCode(err), tc.says)
			}
		})
	}
}

func TestMask(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"+14155552671", "+1 ••• ••• 2671"},
		{"+447911123456", "+44 ••• ••• 3456"},
		{"+819012345678", "+81 ••• ••• 5678"},
		{"+3531", "••• 31"}, // not a number: almost nothing shown
		{"4155552671", "••• 71"},
		{"", "•••"},
	} {
		if got := phonenumber.Mask(tc.in); got != tc.want {
			t.Errorf("Mask(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	var n auth.PhoneNumbers = phonenumber.Numbers{}
	if got, err := n.Normalize("07911 123456", "GB"); err != nil || n.Mask(got) != "+44 ••• ••• 3456" {
		t.Errorf("Numbers: %q, %v", got, err)
	}
}

// FuzzNormalize feeds Normalize what people (and attackers) might type: it
// never panics, answers *auth.Error CodeInvalid or an E.164 number, and its
// answer is stable (normalizing the result gives the result).
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"+1 (415) 555-2671", "07911 123456", "00 33 6 12 34 56 78", "+44 7911 123456 ext 1", "tel:+1-415-555-2671",
		"+", "++1", "0", "1-800-FLOWERS", "+٤٤٧٧٠٠٩٠٠١٢٣", "+1\x00415", "ｰ1 415", "+1 415 555 2671;phone-context=x",
	} {
		f.Add(s, "GB")
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, raw, region string) {
		got, err := phonenumber.Normalize(raw, region)
		if err != nil {
			if auth.ErrorCode(err) != auth.CodeInvalid {
				t.Fatalf("Normalize(%q, %q) error %v is not CodeInvalid", raw, region, err)
			}
			return
		}
		if len(got) < 3 || len(got) > 16 || got[0] != '+' || strings.Trim(got[1:], "0123456789") != "" {
			t.Fatalf("Normalize(%q, %q) = %q, not E.164", raw, region, got)
		}
		again, err := phonenumber.Normalize(got, "")
		if err != nil || again != got {
			t.Fatalf("Normalize(%q) = %q, %v; want it unchanged", got, again, err)
		}
		if m := phonenumber.Mask(got); !strings.HasPrefix(m, "+") || strings.Contains(m, got[1:]) {
			t.Fatalf("Mask(%q) = %q", got, m)
		}
	})
}
