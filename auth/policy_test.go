package auth_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
)

func TestEvaluateMFA(t *testing.T) {
	t.Parallel()
	p := auth.DefaultMFAPolicy()
	p.Types[auth.TypeProvider] = auth.MFATypePolicy{SensitiveRequiresMFA: true, RequiredServiceTypes: []string{"gas", "locksmith"}}
	created := time.Date(2026, 12, 4, 14, 0, 0, 0, time.UTC)
	deadline := created.Add(24 * time.Hour)
	signedIn := created.Add(2 * time.Hour)
	staff := &auth.User{ID: "s", Type: auth.TypeStaff, CreatedAt: created}
	owner := &auth.User{ID: "o", Type: auth.TypeOwner, CreatedAt: created}
	provider := &auth.User{ID: "p", Type: auth.TypeProvider, CreatedAt: created}
	plain := &auth.Session{Methods: []string{"google"}, AuthTime: signedIn}
	elevated := func(at time.Time, m string) *auth.Session {
		return &auth.Session{Methods: []string{"google", m}, AuthTime: signedIn, MFAAt: at}
	}
	mfaAt := created.Add(30 * 24 * time.Hour)

	strict := auth.MFAPolicy{Types: map[auth.UserType]auth.MFATypePolicy{auth.TypeStaff: {Required: true}}}

	tests := []struct {
		name     string
		policy   *auth.MFAPolicy // nil: p
		in       auth.MFAInput
		want     auth.MFAAction
		deadline time.Time
		accepted []string // nil: not checked
		reason   string   // a substring of Reason; "": not checked
	}{
		// Staff: mandatory, 24 h of grace, then blocked.
		{name: "staff without MFA right after creation gets the wizard with the deadline",
			in:   auth.MFAInput{User: staff, Session: plain, Now: created.Add(time.Minute)},
			want: auth.MFASetup, deadline: deadline, accepted: []string{auth.MethodWebAuthn, auth.MethodTOTP, auth.MethodEmail}},
		{name: "staff without MFA a nanosecond before the deadline still gets the wizard",
			in:   auth.MFAInput{User: staff, Session: plain, Now: deadline.Add(-time.Nanosecond)},
			want: auth.MFASetup, deadline: deadline},
		{name: "staff without MFA at the deadline is blocked",
			in:   auth.MFAInput{User: staff, Session: plain, Now: deadline},
			want: auth.MFABlocked, deadline: deadline, reason: "ask an administrator"},
		{name: "staff without MFA a week late is blocked",
			in:   auth.MFAInput{User: staff, Session: plain, Now: deadline.Add(7 * 24 * time.Hour)},
			want: auth.MFABlocked, deadline: deadline},
		{name: "an administrator's extension replaces the deadline",
			in:   auth.MFAInput{User: staff, Session: plain, Settings: &auth.MFASettings{Deadline: deadline.Add(48 * time.Hour)}, Now: deadline.Add(time.Hour)},
			want: auth.MFASetup, deadline: deadline.Add(48 * time.Hour)},
		{name: "after the extended deadline staff is blocked again",
			in:   auth.MFAInput{User: staff, Session: plain, Settings: &auth.MFASettings{Deadline: deadline.Add(48 * time.Hour)}, Now: deadline.Add(48 * time.Hour)},
			want: auth.MFABlocked, deadline: deadline.Add(48 * time.Hour)},
		{name: "staff with only SMS is not set up: a challenge first",
			in:   auth.MFAInput{User: staff, Methods: []string{auth.MethodSMS}, Session: plain, Now: created.Add(time.Hour)},
			want: auth.MFAChallenge, accepted: []string{auth.MethodSMS}},
		{name: "staff with only SMS, verified, still gets the wizard",
			in:   auth.MFAInput{User: staff, Methods: []string{auth.MethodSMS}, Session: elevated(signedIn, auth.MethodSMS), Now: created.Add(3 * time.Hour)},
			want: auth.MFASetup, deadline: deadline, reason: "alone is not enough"},
		{name: "staff with only SMS after the deadline is blocked, verified or not",
			in:   auth.MFAInput{User: staff, Methods: []string{auth.MethodSMS}, Session: elevated(deadline, auth.MethodSMS), Now: deadline.Add(time.Minute)},
			want: auth.MFABlocked, deadline: deadline},
		{name: "staff with TOTP is challenged at sign-in",
			in:   auth.MFAInput{User: staff, Methods: []string{auth.MethodTOTP}, BackupCodesLeft: 10, Session: plain, Now: deadline.Add(time.Hour)},
			want: auth.MFAChallenge, accepted: []string{auth.MethodTOTP, auth.MethodBackupCode}},
		{name: "staff with TOTP and SMS may answer with either, and backup codes",
			in:   auth.MFAInput{User: staff, Methods: []string{auth.MethodSMS, auth.MethodTOTP, auth.MethodTOTP}, BackupCodesLeft: 3, Session: plain, Now: deadline.Add(time.Hour)},
			want: auth.MFAChallenge, accepted: []string{auth.MethodTOTP, auth.MethodBackupCode, auth.MethodSMS}},
		{name: "backup codes are not offered when none are left",
			in:   auth.MFAInput{User: staff, Methods: []string{auth.MethodWebAuthn}, Session: plain, Now: deadline.Add(time.Hour)},
			want: auth.MFAChallenge, accepted: []string{auth.MethodWebAuthn}},
		{name: "staff whose session verified TOTP is allowed, long after the deadline",
			in:   auth.MFAInput{User: staff, Methods: []string{auth.MethodTOTP}, Session: elevated(mfaAt, auth.MethodTOTP), Now: mfaAt.Add(8 * time.Hour)},
			want: auth.MFAAllow},
		{name: "a session's MFAAt without a second-factor method does not count",
			in:   auth.MFAInput{User: staff, Methods: []string{auth.MethodTOTP}, Session: &auth.Session{Methods: []string{"google"}, MFAAt: mfaAt}, Now: mfaAt},
			want: auth.MFAChallenge},
		{name: "a remembered device skips the challenge",
			in:   auth.MFAInput{User: staff, Methods: []string{auth.MethodTOTP}, Session: plain, TrustedDevice: true, Now: deadline.Add(time.Hour)},
			want: auth.MFAAllow, reason: "remembered"},
		{name: "risk forces the challenge even on a remembered device",
			in: auth.MFAInput{User: staff, Methods: []string{auth.MethodTOTP}, Session: plain, TrustedDevice: true,
				Risk: auth.MFARisk{RequireMFA: true, Reasons: []string{"sign-in from a new country"}}, Now: deadline.Add(time.Hour)},
			want: auth.MFAChallenge, reason: "new country"},
		{name: "risk without a remembered device is an ordinary challenge",
			in:   auth.MFAInput{User: owner, Methods: []string{auth.MethodTOTP}, Session: plain, Risk: auth.MFARisk{RequireMFA: true}, Now: signedIn},
			want: auth.MFAChallenge},
		{name: "staff with only SMS on a remembered device goes straight to the wizard",
			in:   auth.MFAInput{User: staff, Methods: []string{auth.MethodSMS}, Session: plain, TrustedDevice: true, Now: created.Add(time.Hour)},
			want: auth.MFASetup, deadline: deadline},
		{name: "staff with zero grace must set up before anything", policy: &strict,
			in:   auth.MFAInput{User: staff, Session: plain, Now: created},
			want: auth.MFASetupRequired},

		// Owners: optional with a prompt; required by their organization.
		{name: "owner without MFA is prompted",
			in:   auth.MFAInput{User: owner, Session: plain, Now: signedIn},
			want: auth.MFAPrompt, accepted: []string{auth.MethodWebAuthn, auth.MethodTOTP, auth.MethodEmail, auth.MethodSMS}},
		{name: "owner with TOTP is challenged",
			in:   auth.MFAInput{User: owner, Methods: []string{auth.MethodTOTP}, Session: plain, Now: signedIn},
			want: auth.MFAChallenge},
		{name: "owner with SMS only is set up (SMS is enough for owners) and challenged",
			in:   auth.MFAInput{User: owner, Methods: []string{auth.MethodSMS}, Session: plain, Now: signedIn},
			want: auth.MFAChallenge, accepted: []string{auth.MethodSMS}},
		{name: "owner whose organization requires MFA must set it up now",
			in:   auth.MFAInput{User: owner, Settings: &auth.MFASettings{Required: true}, Session: plain, Now: signedIn},
			want: auth.MFASetupRequired, reason: "organization"},
		{name: "owner whose organization requires MFA gets until the deadline an administrator set",
			in:   auth.MFAInput{User: owner, Settings: &auth.MFASettings{Required: true, Deadline: deadline}, Session: plain, Now: signedIn},
			want: auth.MFASetup, deadline: deadline},
		{name: "owner: a high-value transaction right after the challenge is allowed",
			in:   auth.MFAInput{User: owner, Methods: []string{auth.MethodTOTP}, Session: elevated(signedIn, auth.MethodTOTP), Purpose: auth.PurposeHighValue, Now: signedIn.Add(4*time.Minute + 59*time.Second)},
			want: auth.MFAAllow},
		{name: "owner: a high-value transaction 5:01 after the challenge needs it again",
			in:   auth.MFAInput{User: owner, Methods: []string{auth.MethodTOTP}, Session: elevated(signedIn, auth.MethodTOTP), Purpose: auth.PurposeHighValue, Now: signedIn.Add(5*time.Minute + time.Second)},
			want: auth.MFAChallenge, reason: "recent"},
		{name: "owner: a high-value transaction on a remembered device still needs a fresh factor",
			in:   auth.MFAInput{User: owner, Methods: []string{auth.MethodTOTP}, Session: plain, TrustedDevice: true, Purpose: auth.PurposeHighValue, Now: signedIn},
			want: auth.MFAChallenge},
		{name: "owner without MFA must set it up for a high-value transaction",
			in:   auth.MFAInput{User: owner, Session: plain, Purpose: auth.PurposeHighValue, Now: signedIn},
			want: auth.MFASetupRequired, reason: "transaction"},
		{name: "owner: sensitive information needs nothing more",
			in:   auth.MFAInput{User: owner, Session: plain, Purpose: auth.PurposeSensitive, Now: signedIn},
			want: auth.MFAAllow},

		// Providers: optional; required for sensitive information and for
		// configured service types.
		{name: "provider without MFA is let in without a prompt",
			in:   auth.MFAInput{User: provider, Session: plain, Now: signedIn},
			want: auth.MFAAllow},
		{name: "provider offering a required service type must set up MFA",
			in:   auth.MFAInput{User: provider, Settings: &auth.MFASettings{ServiceTypes: []string{"plumbing", "gas"}}, Session: plain, Now: signedIn},
			want: auth.MFASetupRequired, reason: "services you offer"},
		{name: "provider offering other service types is not required",
			in:   auth.MFAInput{User: provider, Settings: &auth.MFASettings{ServiceTypes: []string{"plumbing"}}, Session: plain, Now: signedIn},
			want: auth.MFAAllow},
		{name: "provider without MFA must set it up for sensitive information",
			in:   auth.MFAInput{User: provider, Session: plain, Purpose: auth.PurposeSensitive, Now: signedIn},
			want: auth.MFASetupRequired, reason: "information"},
		{name: "provider with MFA on a remembered device is challenged for sensitive information",
			in:   auth.MFAInput{User: provider, Methods: []string{auth.MethodTOTP}, Session: plain, TrustedDevice: true, Purpose: auth.PurposeSensitive, Now: signedIn},
			want: auth.MFAChallenge},
		{name: "provider whose session verified MFA hours ago may see sensitive information",
			in:   auth.MFAInput{User: provider, Methods: []string{auth.MethodTOTP}, Session: elevated(signedIn, auth.MethodTOTP), Purpose: auth.PurposeSensitive, Now: signedIn.Add(6 * time.Hour)},
			want: auth.MFAAllow},
		{name: "provider: high-value needs no step-up under this policy",
			in:   auth.MFAInput{User: provider, Methods: []string{auth.MethodTOTP}, Session: elevated(signedIn, auth.MethodTOTP), Purpose: auth.PurposeHighValue, Now: signedIn.Add(time.Hour)},
			want: auth.MFAAllow},

		// Step-up, for every type.
		{name: "step-up at 4:59 is fresh",
			in:   auth.MFAInput{User: provider, Methods: []string{auth.MethodTOTP}, Session: elevated(signedIn, auth.MethodTOTP), Purpose: auth.PurposeStepUp, Now: signedIn.Add(4*time.Minute + 59*time.Second)},
			want: auth.MFAAllow},
		{name: "step-up at exactly 5:00 is still fresh",
			in:   auth.MFAInput{User: provider, Methods: []string{auth.MethodTOTP}, Session: elevated(signedIn, auth.MethodTOTP), Purpose: auth.PurposeStepUp, Now: signedIn.Add(5 * time.Minute)},
			want: auth.MFAAllow},
		{name: "step-up at 5:01 is too old",
			in:   auth.MFAInput{User: staff, Methods: []string{auth.MethodTOTP}, BackupCodesLeft: 1, Session: elevated(signedIn, auth.MethodTOTP), Purpose: auth.PurposeStepUp, Now: signedIn.Add(5*time.Minute + time.Second)},
			want: auth.MFAChallenge, accepted: []string{auth.MethodTOTP, auth.MethodBackupCode}},
		{name: "step-up without any factor needs setup",
			in:   auth.MFAInput{User: provider, Session: plain, Purpose: auth.PurposeStepUp, Now: signedIn},
			want: auth.MFASetupRequired},
		{name: "step-up for blocked staff is still blocked",
			in:   auth.MFAInput{User: staff, Session: plain, Purpose: auth.PurposeStepUp, Now: deadline},
			want: auth.MFABlocked, deadline: deadline},
		{name: "step-up for staff in the grace period needs setup",
			in:   auth.MFAInput{User: staff, Session: plain, Purpose: auth.PurposeStepUp, Now: created},
			want: auth.MFASetupRequired},
		{name: "an empty purpose is sign-in",
			in:   auth.MFAInput{User: owner, Methods: []string{auth.MethodEmail}, Session: elevated(signedIn, auth.MethodEmail), Now: signedIn.Add(24 * time.Hour)},
			want: auth.MFAAllow},
		{name: "a user of a type without a policy is allowed",
			in:   auth.MFAInput{User: &auth.User{Type: "robot"}, Session: plain, Now: signedIn},
			want: auth.MFAAllow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policy := p
			if tt.policy != nil {
				policy = *tt.policy
			}
			d := auth.EvaluateMFA(policy, tt.in)
			if d.Action != tt.want {
				t.Fatalf("action %s, want %s (reason %q)", d.Action, tt.want, d.Reason)
			}
			if !d.Deadline.Equal(tt.deadline) {
				t.Errorf("deadline %v, want %v", d.Deadline, tt.deadline)
			}
			if tt.accepted != nil && !slices.Equal(d.AcceptedMethods, tt.accepted) {
				t.Errorf("accepted methods %v, want %v", d.AcceptedMethods, tt.accepted)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("reason %q does not say %q", d.Reason, tt.reason)
			}
			if d.Action.Gates() && d.Reason == "" {
				t.Errorf("a %s has no reason for the person", d.Action)
			}
			if d.Action == auth.MFABlocked || d.Action == auth.MFASetupRequired || d.Action == auth.MFAChallenge {
				if !d.Required {
					t.Errorf("%s without Required", d.Action)
				}
			}
		})
	}
}

func TestMFAActionGates(t *testing.T) {
	t.Parallel()
	for a, gates := range map[auth.MFAAction]bool{
		auth.MFAAllow: false, auth.MFAPrompt: false, auth.MFASetup: false,
		auth.MFASetupRequired: true, auth.MFAChallenge: true, auth.MFABlocked: true,
	} {
		if a.Gates() != gates {
			t.Errorf("%s.Gates() = %t", a, !gates)
		}
	}
}
