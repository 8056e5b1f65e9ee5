package auth

import (
	"slices"
	"time"
)

// MFAPurpose is what a second factor is asked for.
type MFAPurpose string

// The purposes.
const (
	// PurposeSignIn: being signed in at all (every page and API call).
	PurposeSignIn MFAPurpose = "sign-in"
	// PurposeSensitive: reading sensitive information (a provider's view of a
	// property's access codes, tenants' details...).
	PurposeSensitive MFAPurpose = "sensitive"
	// PurposeHighValue: a high-value transaction (an owner paying a large
	// invoice); needs a fresh second factor where the policy says so.
	PurposeHighValue MFAPurpose = "high-value"
	// PurposeStepUp: another service asked for a fresh second factor
	// (POST /api/v1/stepup).
	PurposeStepUp MFAPurpose = "step-up"
)

// MFAAction is what EvaluateMFA tells the HTTP layer to do.
type MFAAction string

// The actions, from the most to the least permissive.
const (
	// MFAAllow: go ahead.
	MFAAllow MFAAction = "allow"
	// MFAPrompt: go ahead, and suggest setting up a second factor (once, after
	// sign-in; the person may skip it).
	MFAPrompt MFAAction = "prompt"
	// MFASetup: go ahead, but show the setup wizard after sign-in: setting up
	// is mandatory by Deadline, skippable until then.
	MFASetup MFAAction = "setup"
	// MFASetupRequired: nothing but the setup wizard until a second factor
	// that satisfies the policy is set up.
	MFASetupRequired MFAAction = "setup_required"
	// MFAChallenge: nothing but the challenge page until one of
	// AcceptedMethods is verified in this session.
	MFAChallenge MFAAction = "challenge"
	// MFABlocked: the setup deadline passed; only an administrator can let
	// the person in again (extend the deadline, or reset their MFA).
	MFABlocked MFAAction = "blocked"
)

// Gates reports whether a stops the person from going on (a challenge, a
// mandatory setup or a block) rather than letting them through.
func (a MFAAction) Gates() bool {
	return a == MFAChallenge || a == MFASetupRequired || a == MFABlocked
}

// MFATypePolicy is the MFA policy of one user type.
type MFATypePolicy struct {
	// Required makes MFA mandatory for every user of the type.
	Required bool
	// SetupGrace is how long after the account was created a user of a
	// Required type may still sign in without MFA (the wizard is shown at each
	// sign-in with the deadline); afterwards sign-in is blocked. Zero: MFA
	// must be set up before anything else. MFASettings.Deadline, when set
	// (an administrator's extension), replaces CreatedAt+SetupGrace.
	SetupGrace time.Duration
	// FallbackOnly are methods that never satisfy a requirement on their own
	// (staff: SMS). They still answer challenges when enrolled beside others.
	FallbackOnly []string
	// Prompt suggests setting up MFA after sign-in to users who have none.
	Prompt bool
	// RequiredServiceTypes make MFA mandatory for the users (service
	// providers) whose MFASettings.ServiceTypes include any of them.
	RequiredServiceTypes []string
	// SensitiveRequiresMFA makes PurposeSensitive need a second factor
	// verified in the session.
	SensitiveRequiresMFA bool
	// HighValueStepUp makes PurposeHighValue need a fresh second factor (no
	// older than MFAPolicy.StepUpMaxAge).
	HighValueStepUp bool
	// Recommended is the method the setup wizard recommends (staff: passkeys,
	// the phishing-resistant one); empty: the first one offered.
	Recommended string
}

// MFAPolicy is the MFA policy: data, evaluated by EvaluateMFA.
type MFAPolicy struct {
	// Types is the policy of each user type; a type not listed has optional
	// MFA without prompts.
	Types map[UserType]MFATypePolicy
	// StepUpMaxAge is how recent a second factor must be for PurposeStepUp
	// and for PurposeHighValue where HighValueStepUp is set.
	StepUpMaxAge time.Duration
	// SensitiveMaxAge is how recent it must be for PurposeSensitive; zero:
	// any second factor verified in the session.
	SensitiveMaxAge time.Duration
}

// DefaultMFAPolicy is the platform's policy: staff must set up MFA within 24
// hours of account creation (SMS alone does not count; passkeys recommended);
// property owners are encouraged after sign-in, required when their
// organization says so, and step up for high-value transactions; service
// providers need MFA for sensitive information; a step-up lasts 5 minutes.
func DefaultMFAPolicy() MFAPolicy {
	return MFAPolicy{
		Types: map[UserType]MFATypePolicy{
			TypeStaff: {
				Required: true, SetupGrace: 24 * time.Hour, FallbackOnly: []string{MethodSMS},
				SensitiveRequiresMFA: true, HighValueStepUp: true, Recommended: MethodWebAuthn,
			},
			TypeOwner:    {Prompt: true, HighValueStepUp: true, Recommended: MethodTOTP},
			TypeProvider: {SensitiveRequiresMFA: true, Recommended: MethodTOTP},
		},
		StepUpMaxAge: 5 * time.Minute,
	}
}

// MFARisk is what suspicious-activity detection concluded about a
// sign-in, as the policy reads it.
type MFARisk struct {
	// RequireMFA: the sign-in looks unusual enough (new device, new country,
	// impossible travel, a burst of failures) that a remembered device no
	// longer skips the challenge.
	RequireMFA bool
	// Reasons say why, for the page ("sign-in from a new country").
	Reasons []string
}

// MFAInput is everything EvaluateMFA decides on.
type MFAInput struct {
	// User is the signed-in user; required.
	User *User
	// Methods are the methods of the user's confirmed factors (MethodTOTP,
	// MethodEmail, MethodSMS, MethodWebAuthn; repeats and others are ignored).
	Methods []string
	// BackupCodesLeft is how many unused backup codes the user has.
	BackupCodesLeft int
	// Settings are the user's MFA settings (nil: none stored).
	Settings *MFASettings
	// Session is the current session (nil: none yet).
	Session *Session
	// Purpose is what the decision is for (empty: PurposeSignIn).
	Purpose MFAPurpose
	// Risk is what suspicious-activity detection found at sign-in.
	Risk MFARisk
	// TrustedDevice is set when the browser holds a valid "remember this
	// device" token of the user.
	TrustedDevice bool
	// Now is the time of the decision.
	Now time.Time
}

// MFADecision is what EvaluateMFA decided.
type MFADecision struct {
	Action MFAAction
	// Deadline is when setting up becomes mandatory (MFASetup) or when it
	// became so (MFABlocked).
	Deadline time.Time
	// AcceptedMethods are, for MFAChallenge, the enrolled methods that answer
	// it (MethodBackupCode included when codes are left), strongest first;
	// for MFAPrompt, MFASetup and MFASetupRequired, the methods whose setup
	// satisfies the policy, strongest first.
	AcceptedMethods []string
	// Recommended is the method to suggest first when setting up.
	Recommended string
	// Required says MFA is mandatory for this user (and purpose).
	Required bool
	// Reason explains the decision to the person.
	Reason string
}

// EvaluateMFA applies policy p to one request. Rules, in order:
//
//  1. A user for whom MFA is mandatory (type Required, their organization's
//     MFASettings.Required, or a RequiredServiceTypes match) and who has no
//     factor that satisfies it (FallbackOnly methods alone do not): blocked
//     at or after the setup deadline (MFASettings.Deadline, else CreatedAt +
//     SetupGrace, when there is one); else, if they have some factor that
//     this session has not verified, a challenge first (nobody adds a factor
//     on the strength of the first one alone); else the setup wizard,
//     skippable until the deadline, or mandatory when there is none.
//  2. A user with factors: allowed once the session verified one; allowed on
//     a trusted device unless the risk signals demand a challenge; else
//     challenged.
//  3. A user without factors: prompted where the type prompts; else allowed.
//  4. Then the purpose: step-up (always), high-value (HighValueStepUp) and
//     sensitive (SensitiveRequiresMFA) need a second factor verified in the
//     session, no older than StepUpMaxAge (SensitiveMaxAge for sensitive):
//     challenged if it is missing or too old (a trusted device does not
//     count), setup required if the user has no factor.
func EvaluateMFA(p MFAPolicy, in MFAInput) MFADecision {
	purpose := in.Purpose
	if purpose == "" {
		purpose = PurposeSignIn
	}
	var tp MFATypePolicy
	if in.User != nil {
		tp = p.Types[in.User.Type]
	}
	settings := in.Settings
	if settings == nil {
		settings = &MFASettings{}
	}
	enrolled := enrolledMethods(in.Methods)
	var satisfying []string
	for _, m := range enrolled {
		if !slices.Contains(tp.FallbackOnly, m) {
			satisfying = append(satisfying, m)
		}
	}
	challenge := slices.Clone(enrolled)
	if len(enrolled) > 0 && in.BackupCodesLeft > 0 {
		challenge = append(challenge, MethodBackupCode)
		slices.SortStableFunc(challenge, byStrength)
	}
	var setupMethods []string
	for _, m := range SecondFactorMethods {
		if m != MethodBackupCode && !slices.Contains(tp.FallbackOnly, m) {
			setupMethods = append(setupMethods, m)
		}
	}
	recommended := tp.Recommended
	if recommended == "" && len(setupMethods) > 0 {
		recommended = setupMethods[0]
	}
	verified := in.Session != nil && !in.Session.MFAAt.IsZero() && len(in.Session.SecondFactors()) > 0
	skipByDevice := in.TrustedDevice && !in.Risk.RequireMFA

	required, why := false, ""
	switch {
	case tp.Required:
		required, why = true, typeLabel(in.User)+" accounts must use two-step verification."
	case settings.Required:
		required, why = true, "Your organization requires two-step verification."
	case anyCommon(settings.ServiceTypes, tp.RequiredServiceTypes):
		required, why = true, "Two-step verification is required for the services you offer."
	}

	setup := func(a MFAAction, reason string) MFADecision {
		return MFADecision{Action: a, AcceptedMethods: setupMethods, Recommended: recommended, Required: a != MFAPrompt, Reason: reason}
	}
	challengeFor := func(reason string) MFADecision {
		return MFADecision{Action: MFAChallenge, AcceptedMethods: challenge, Required: true, Reason: reason}
	}

	// The sign-in decision.
	var d MFADecision
	switch {
	case required && len(satisfying) == 0:
		deadline := settings.Deadline
		if deadline.IsZero() && tp.Required && tp.SetupGrace > 0 && in.User != nil {
			deadline = in.User.CreatedAt.Add(tp.SetupGrace)
		}
		switch {
		case !deadline.IsZero() && !in.Now.Before(deadline):
			d = MFADecision{Action: MFABlocked, Deadline: deadline, Required: true,
				Reason: why + " The deadline to set it up has passed, so signing in is blocked: ask an administrator to extend the deadline or reset your two-step verification."}
		case len(enrolled) > 0 && !verified && !skipByDevice:
			d = challengeFor("Confirm it is you with a method you already have, then finish setting up two-step verification.")
		case !deadline.IsZero():
			d = setup(MFASetup, why+" Set it up before the deadline.")
			d.Deadline = deadline
		default:
			d = setup(MFASetupRequired, why+" Set it up to continue.")
		}
		if len(enrolled) > 0 && d.Action != MFAChallenge && d.Action != MFABlocked {
			d.Reason = why + " " + methodLabel(enrolled[0]) + " alone is not enough: add another method."
			if d.Action == MFASetup {
				d.Reason += " Do it before the deadline."
			}
		}
	case len(enrolled) > 0:
		switch {
		case verified:
			d = MFADecision{Action: MFAAllow, Required: required}
		case skipByDevice:
			d = MFADecision{Action: MFAAllow, Required: required, Reason: "This device is remembered."}
		case in.Risk.RequireMFA && in.TrustedDevice:
			d = challengeFor("This sign-in looks unusual, so even this remembered device needs your second factor" + reasons(in.Risk.Reasons) + ".")
		default:
			d = challengeFor("Enter your second factor to finish signing in.")
		}
	case tp.Prompt:
		d = setup(MFAPrompt, "Protect your account with two-step verification: a code from your phone, or a passkey, on top of your sign-in.")
	default:
		d = MFADecision{Action: MFAAllow}
	}
	if purpose == PurposeSignIn || d.Action.Gates() {
		return d
	}

	// Purposes that need more than being signed in.
	var maxAge time.Duration
	var what string
	switch {
	case purpose == PurposeStepUp:
		maxAge, what = p.StepUpMaxAge, "This action"
	case purpose == PurposeHighValue && tp.HighValueStepUp:
		maxAge, what = p.StepUpMaxAge, "This transaction"
	case purpose == PurposeSensitive && tp.SensitiveRequiresMFA:
		maxAge, what = p.SensitiveMaxAge, "This information"
	default:
		return MFADecision{Action: MFAAllow, Required: required}
	}
	if len(enrolled) == 0 {
		return setup(MFASetupRequired, what+" needs two-step verification. Set it up to continue.")
	}
	if verified && (maxAge <= 0 || !in.Now.After(in.Session.MFAAt.Add(maxAge))) {
		return MFADecision{Action: MFAAllow, Required: true}
	}
	if verified {
		return challengeFor(what + " needs a recent second factor. Enter it again to continue.")
	}
	return challengeFor(what + " needs your second factor. Enter it to continue.")
}

// enrolledMethods returns the second-factor methods in ms (backup codes
// excluded, they are not factors), without repeats, strongest first.
func enrolledMethods(ms []string) []string {
	var out []string
	for _, m := range ms {
		if IsSecondFactor(m) && m != MethodBackupCode && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, byStrength)
	return out
}

func byStrength(a, b string) int {
	return slices.Index(SecondFactorMethods, a) - slices.Index(SecondFactorMethods, b)
}

func anyCommon(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func typeLabel(u *User) string {
	if u == nil {
		return "These"
	}
	return u.Type.Label()
}

func reasons(rs []string) string {
	if len(rs) == 0 {
		return ""
	}
	out := " ("
	for i, r := range rs {
		if i > 0 {
			out += ", "
		}
		out += r
	}
	return out + ")"
}

// The assurance levels a session reaches, as OpenID Connect acr values.
const (
	// ACRMFA: a second factor was verified in the session.
	ACRMFA = "urn:hestami:acr:mfa"
	// ACRSingle: the sign-in alone.
	ACRSingle = "urn:hestami:acr:sfa"
)

// SessionACR is the acr of a session that proved methods (its amr values):
// ACRMFA when any is a second factor, else ACRSingle.
func SessionACR(methods []string) string {
	if slices.ContainsFunc(methods, IsSecondFactor) {
		return ACRMFA
	}
	return ACRSingle
}

// MFAMethodLabel names a second-factor method for people: "Authenticator app".
func MFAMethodLabel(method string) string { return methodLabel(method) }

func methodLabel(method string) string {
	switch method {
	case MethodTOTP:
		return "Authenticator app"
	case MethodBackupCode:
		return "Backup code"
	case MethodEmail:
		return "Email code"
	case MethodSMS:
		return "Text message (SMS)"
	case MethodWebAuthn:
		return "Passkey or security key"
	}
	return method
}
