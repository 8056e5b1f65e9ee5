package auth_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
)

func TestIPRulesCheck(t *testing.T) {
	t.Parallel()
	rules, err := auth.ParseIPRules([]string{
		"for=staff; allow=10.0.0.0/8, 192.0.2.0/24, 2001:db8:100::/48; network=the office or VPN network",
		"for=role:staff:admin; allow=10.8.0.0/16, 2001:db8:100:8::/64; network=the VPN",
		"for=staff; deny=10.66.0.0/16; blocked=the guest Wi-Fi",
		"for=owner, provider; deny=198.51.100.0/24, 2001:db8:bad::/48",
		"", // skipped
		"deny=203.0.113.66",
	})
	if err != nil {
		t.Fatal(err)
	}
	staff := &auth.User{Type: auth.TypeStaff, Roles: []string{"staff:support"}}
	admin := &auth.User{Type: auth.TypeStaff, Roles: []string{"staff:admin"}}
	owner := &auth.User{Type: auth.TypeOwner, Roles: []string{"owner"}}
	provider := &auth.User{Type: auth.TypeProvider, Roles: []string{"provider"}}
	const (
		officeOnly = "Staff accounts can only sign in from the office or VPN network. Connect to it and try again."
		vpnOnly    = "Accounts with the role staff:admin can only sign in from the VPN. Connect to it and try again."
		guestWiFi  = "Staff accounts cannot sign in from the guest Wi-Fi. Use another connection, or contact support if you need access from here."
		ownerBlock = "Property owner accounts cannot sign in from this network. Use another connection, or contact support if you need access from here."
		provBlock  = "Service provider accounts cannot sign in from this network. Use another connection, or contact support if you need access from here."
		allBlock   = "Accounts cannot sign in from this network. Use another connection, or contact support if you need access from here."
		unknownIP  = "Staff accounts need a known network to sign in, and we could not tell yours. Try again from another connection, or contact support."
	)
	for _, tc := range []struct {
		name string
		u    *auth.User
		ip   string // "" for an invalid address
		want string // the message; "" when allowed
	}{
		{"staff in the office", staff, "10.1.2.3", ""},
		{"staff on the second office range", staff, "192.0.2.200", ""},
		{"staff at home", staff, "203.0.113.9", officeOnly},
		{"staff on office IPv6", staff, "2001:db8:100:42::1", ""},
		{"staff on other IPv6", staff, "2001:db8:200::1", officeOnly},
		{"staff as IPv4-mapped IPv6 in the office", staff, "::ffff:10.1.2.3", ""},
		{"staff as IPv4-mapped IPv6 at home", staff, "::ffff:203.0.113.9", officeOnly},
		{"staff on the guest Wi-Fi inside the office range: deny wins", staff, "10.66.0.5", guestWiFi},
		{"staff on the guest Wi-Fi as IPv4-mapped IPv6", staff, "::ffff:10.66.0.5", guestWiFi},
		{"staff with an unknown address", staff, "", unknownIP},
		{"admin on the VPN (inside the office range too)", admin, "10.8.1.1", ""},
		{"admin in the office but off the VPN: both allow lists apply", admin, "10.1.2.3", vpnOnly},
		{"admin at home: the type's rule comes first", admin, "203.0.113.9", officeOnly},
		{"admin on the VPN over IPv6", admin, "2001:db8:100:8::99", ""},
		{"admin on office IPv6 off the VPN", admin, "2001:db8:100:9::1", vpnOnly},
		{"owner anywhere", owner, "203.0.113.9", ""},
		{"owner from a denied network", owner, "198.51.100.7", ownerBlock},
		{"owner from a denied IPv6 network", owner, "2001:db8:bad:1::1", ownerBlock},
		{"owner from a denied network, IPv4-mapped", owner, "::ffff:198.51.100.7", ownerBlock},
		{"provider from a denied network", provider, "198.51.100.7", provBlock},
		{"provider from the office range: no allow list for providers", provider, "10.1.2.3", ""},
		{"everyone is denied one address", owner, "203.0.113.66", allBlock},
		{"the next address is fine", owner, "203.0.113.67", ""},
		{"staff from the address everyone is denied", staff, "203.0.113.66", allBlock},
		{"owner with an unknown address is denied: it cannot be checked", owner, "", "Property owner accounts need a known network to sign in, and we could not tell yours. Try again from another connection, or contact support."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ip netip.Addr
			if tc.ip != "" {
				ip = netip.MustParseAddr(tc.ip)
			}
			err := rules.Check(tc.u, ip)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("allowed, want %q", tc.want)
			}
			if auth.ErrorCode(err) != auth.CodeForbidden {
				t.Errorf("code %s, want forbidden", auth.ErrorCode(err))
			}
			if got := auth.ErrorMessage(err); got != tc.want {
				t.Errorf("message\n got %q\nwant %q", got, tc.want)
			}
			if tc.ip != "" && !strings.Contains(err.Error(), netip.MustParseAddr(tc.ip).Unmap().String()) {
				t.Errorf("the cause does not name the address: %v", err)
			}
		})
	}
}

func TestIPRulesNone(t *testing.T) {
	t.Parallel()
	var none *auth.IPRules
	if err := none.Check(&auth.User{Type: auth.TypeStaff}, netip.Addr{}); err != nil {
		t.Fatalf("nil rules: %v", err)
	}
	empty, err := auth.ParseIPRules(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.Check(&auth.User{Type: auth.TypeStaff}, netip.MustParseAddr("203.0.113.1")); err != nil {
		t.Fatalf("no rules: %v", err)
	}
}

func TestNewIPRulesNormalizes(t *testing.T) {
	t.Parallel()
	rules, err := auth.NewIPRules(auth.IPRule{
		Types: []auth.UserType{auth.TypeStaff},
		// Written unmasked, and as IPv4-mapped IPv6.
		Allow: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8"), netip.MustParsePrefix("::ffff:192.0.2.0/120")},
	})
	if err != nil {
		t.Fatal(err)
	}
	staff := &auth.User{Type: auth.TypeStaff}
	for ip, ok := range map[string]bool{"10.200.0.1": true, "192.0.2.9": true, "::ffff:192.0.2.9": true, "192.0.3.1": false, "11.0.0.1": false} {
		if err := rules.Check(staff, netip.MustParseAddr(ip)); (err == nil) != ok {
			t.Errorf("%s: %v, want allowed %v", ip, err, ok)
		}
	}
	for _, bad := range []auth.IPRule{
		{Types: []auth.UserType{"admin"}, Deny: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		{Types: []auth.UserType{auth.TypeStaff}},
		{Allow: []netip.Prefix{{}}},
	} {
		if _, err := auth.NewIPRules(bad); err == nil {
			t.Errorf("NewIPRules(%+v) accepted", bad)
		}
	}
}

func TestParseIPRuleErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spec, want string
	}{
		{"for=staff", "no allow= or deny= networks"},
		{"for=staff; allow=10.0.0.0/33", `"10.0.0.0/33" is not a network in CIDR form`},
		{"for=staff; allow=office", `"office" is neither a network in CIDR form`},
		{"for=staff; allow=", "allow: no networks listed"},
		{"for=admins; allow=10.0.0.0/8", `for: "admins" is neither a user type`},
		{"for=role:staff:boss; allow=10.0.0.0/8", `for: unknown role "staff:boss"`},
		{"for=staff; allow=10.0.0.0/8; allow=10.1.0.0/16", "allow is given twice"},
		{"for=staff; permit=10.0.0.0/8", `unknown key "permit"`},
		{"staff allow 10.0.0.0/8", "is not key=value"},
		{"deny=fe80::1%eth0", "is neither a network"},
	} {
		_, err := auth.ParseIPRule(tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseIPRule(%q) = %v, want an error containing %q", tc.spec, err, tc.want)
		}
	}
	_, err := auth.ParseIPRules([]string{"for=staff; allow=10.0.0.0/8", "for=staff; deny=nope"})
	if err == nil || !strings.Contains(err.Error(), `ip rule 2 ("for=staff; deny=nope")`) {
		t.Errorf("ParseIPRules names the rule: %v", err)
	}
	r, err := auth.ParseIPRule(" FOR = * ;Deny= 203.0.113.5 , 2001:db8::/32 ")
	if err != nil || len(r.Types)+len(r.Roles) != 0 || len(r.Deny) != 2 || r.Deny[0] != netip.MustParsePrefix("203.0.113.5/32") {
		t.Errorf("ParseIPRule with spaces and case: %+v, %v", r, err)
	}
}
