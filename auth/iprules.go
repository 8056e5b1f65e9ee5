package auth

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// IPRule restricts the networks some users may sign in from: users of one of
// Types, or with one of Roles (both empty: everyone).
type IPRule struct {
	Types []UserType
	Roles []string
	// Allow, if not empty, lists the only networks these users may sign in
	// from. Deny lists networks they may never sign in from; Deny wins.
	Allow []netip.Prefix
	Deny  []netip.Prefix
	// Network names the Allow networks for people ("the office or VPN
	// network"); Blocked names the Deny networks ("anonymizing proxies").
	Network string
	Blocked string
}

// IPRules are allow and deny lists of networks per user type or role ("staff
// only from the office or VPN ranges"). Every rule that applies to a user must
// pass: deny lists are checked first, then each applicable allow list (so two
// allow lists that apply narrow each other). IPv4-mapped IPv6 addresses
// (::ffff:192.0.2.1) are checked as the IPv4 addresses they are.
//
// A nil *IPRules has no rules.
type IPRules struct {
	rules []IPRule
}

// NewIPRules returns rules after checking each: known user types, at least one
// network, prefixes normalized (masked; ::ffff:a.b.c.d/n as a.b.c.d/(n-96)).
func NewIPRules(rules ...IPRule) (*IPRules, error) {
	out := &IPRules{}
	for i, r := range rules {
		for _, t := range r.Types {
			if !t.Valid() {
				return nil, fmt.Errorf("ip rule %d: unknown user type %q (use staff, owner or provider)", i+1, t)
			}
		}
		if len(r.Allow) == 0 && len(r.Deny) == 0 {
			return nil, fmt.Errorf("ip rule %d: it lists no network to allow or deny", i+1)
		}
		var err error
		if r.Allow, err = normalizePrefixes(r.Allow); err != nil {
			return nil, fmt.Errorf("ip rule %d: allow: %w", i+1, err)
		}
		if r.Deny, err = normalizePrefixes(r.Deny); err != nil {
			return nil, fmt.Errorf("ip rule %d: deny: %w", i+1, err)
		}
		out.rules = append(out.rules, r)
	}
	return out, nil
}

func normalizePrefixes(ps []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() {
			return nil, fmt.Errorf("invalid network %v", p)
		}
		p = p.Masked()
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, netip.PrefixFrom(p.Addr().WithZone(""), p.Bits()))
	}
	return out, nil
}

// ParseIPRules parses one rule per spec (ParseIPRule), as configuration holds
// them, and returns the rules. Empty specs are skipped.
func ParseIPRules(specs []string) (*IPRules, error) {
	var rules []IPRule
	for i, s := range specs {
		if strings.TrimSpace(s) == "" {
			continue
		}
		r, err := ParseIPRule(s)
		if err != nil {
			return nil, fmt.Errorf("ip rule %d (%q): %w", i+1, s, err)
		}
		rules = append(rules, r)
	}
	return NewIPRules(rules...)
}

// ParseIPRule parses a rule written as key=value fields separated by semicolons:
//
//	for=staff; allow=10.0.0.0/8, 2001:db8::/32; network=the office or VPN network
//	for=role:staff:admin; allow=10.8.0.0/16; network=the VPN
//	for=owner, provider; deny=198.51.100.0/24; blocked=this network
//
// for lists user types (staff, owner, provider) and roles (role:NAME); absent or
// "*", everyone. allow and deny list networks in CIDR form, or single addresses.
func ParseIPRule(spec string) (IPRule, error) {
	var r IPRule
	seen := map[string]bool{}
	for _, field := range strings.Split(spec, ";") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		key, value, ok := strings.Cut(field, "=")
		key, value = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(value)
		if !ok {
			return IPRule{}, fmt.Errorf("%q is not key=value (keys: for, allow, deny, network, blocked)", field)
		}
		if seen[key] {
			return IPRule{}, fmt.Errorf("%s is given twice", key)
		}
		seen[key] = true
		switch key {
		case "for":
			for _, w := range splitList(value) {
				switch {
				case w == "*":
				case strings.HasPrefix(w, "role:"):
					name := strings.TrimPrefix(w, "role:")
					if _, ok := RoleByName(name); !ok {
						return IPRule{}, fmt.Errorf("for: unknown role %q", name)
					}
					r.Roles = append(r.Roles, name)
				case UserType(w).Valid():
					r.Types = append(r.Types, UserType(w))
				default:
					return IPRule{}, fmt.Errorf("for: %q is neither a user type (staff, owner, provider) nor role:NAME", w)
				}
			}
		case "allow", "deny":
			ps, err := parsePrefixes(value)
			if err != nil {
				return IPRule{}, fmt.Errorf("%s: %w", key, err)
			}
			if key == "allow" {
				r.Allow = ps
			} else {
				r.Deny = ps
			}
		case "network":
			r.Network = value
		case "blocked":
			r.Blocked = value
		default:
			return IPRule{}, fmt.Errorf("unknown key %q (keys: for, allow, deny, network, blocked)", key)
		}
	}
	if len(r.Allow) == 0 && len(r.Deny) == 0 {
		return IPRule{}, fmt.Errorf("no allow= or deny= networks")
	}
	return r, nil
}

func splitList(s string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		out = append(out, strings.ToLower(w))
	}
	return out
}

func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if !strings.Contains(w, "/") {
			a, err := netip.ParseAddr(w)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is neither a network in CIDR form (10.0.0.0/8, 2001:db8::/32) nor an address", w)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(w)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network in CIDR form (10.0.0.0/8, 2001:db8::/32)", w)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no networks listed")
	}
	return out, nil
}

// applies returns who the rule applies to in u's case, for the message
// ("Staff accounts"), and whether it applies at all.
func (r *IPRule) applies(u *User) (string, bool) {
	if len(r.Types) == 0 && len(r.Roles) == 0 {
		return "Accounts", true
	}
	if slices.Contains(r.Types, u.Type) {
		return u.Type.Label() + " accounts", true
	}
	for _, role := range r.Roles {
		if slices.Contains(u.Roles, role) {
			return "Accounts with the role " + role, true
		}
	}
	return "", false
}

func containsAddr(ps []netip.Prefix, a netip.Addr) (netip.Prefix, bool) {
	for _, p := range ps {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// Check reports whether u may sign in (or go on using a session) from ip: nil,
// or an *Error with CodeForbidden whose message names the rule ("Staff accounts
// can only sign in from the office or VPN network."); the cause, for the logs
// and the audit log, names the address and the network. An address that is not
// valid fails every rule that applies (it cannot be checked). The caller audits
// refusals.
func (r *IPRules) Check(u *User, ip netip.Addr) error {
	if r == nil {
		return nil
	}
	ip = ip.Unmap().WithZone("")
	for i := range r.rules {
		rule := &r.rules[i]
		who, ok := rule.applies(u)
		if !ok {
			continue
		}
		if !ip.IsValid() {
			return Errorf(CodeForbidden, "%s need a known network to sign in, and we could not tell yours. Try again from another connection, or contact support.", who).
				WithCause(fmt.Errorf("ip rule %d: no valid client address", i+1))
		}
		if p, denied := containsAddr(rule.Deny, ip); denied {
			blocked := rule.Blocked
			if blocked == "" {
				blocked = "this network"
			}
			return Errorf(CodeForbidden, "%s cannot sign in from %s. Use another connection, or contact support if you need access from here.", who, blocked).
				WithCause(fmt.Errorf("ip rule %d: %s is in denied network %s", i+1, ip, p))
		}
	}
	for i := range r.rules {
		rule := &r.rules[i]
		who, ok := rule.applies(u)
		if !ok || len(rule.Allow) == 0 {
			continue
		}
		if _, allowed := containsAddr(rule.Allow, ip); !allowed {
			network := rule.Network
			if network == "" {
				network = "approved networks"
			}
			return Errorf(CodeForbidden, "%s can only sign in from %s. Connect to it and try again.", who, network).
				WithCause(fmt.Errorf("ip rule %d: %s is not in the allowed networks", i+1, ip))
		}
	}
	return nil
}
