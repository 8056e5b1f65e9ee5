package twilio_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/twilio"
	"github.com/hestami/hestami/twilio/twiliotest"
)

const from = "+15005550006"

func newSender(t *testing.T, cfg twilio.Config) *twilio.Sender {
	t.Helper()
	s, err := twilio.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func config(srv *twiliotest.Server) twilio.Config {
	return twilio.Config{AccountSID: twiliotest.AccountSID, AuthToken: twiliotest.AuthToken, From: from, BaseURL: srv.URL, Timeout: 10 * time.Second}
}

func TestSend(t *testing.T) {
	t.Parallel()
	srv := twiliotest.New(t)
	s := newSender(t, config(srv))
	m, err := s.Send(t.Context(), "+447911123456", "123456 is your Hestami code.")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.SID, "SM") || m.Status != "queued" {
		t.Errorf("Send = %+v, want a queued message SM...", m)
	}
	got := srv.Messages()
	if len(got) != 1 || got[0].SID != m.SID || got[0].To != "+447911123456" || got[0].From != from ||
		got[0].Body != "123456 is your Hestami code." || got[0].MessagingServiceSID != "" {
		t.Errorf("Twilio got %+v", got)
	}
	if err := s.SendSMS(t.Context(), auth.SMS{To: "+14155552671", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	if last := srv.Last(t); last.To != "+14155552671" || last.Body != "hi" {
		t.Errorf("SendSMS sent %+v", last)
	}
}

// TestRequestOnTheWire checks the request byte for byte against what
// Twilio's API documents, without the fake's help.
func TestRequestOnTheWire(t *testing.T) {
	t.Parallel()
	const service = "MG0123456789abcdef0123456789abcdef"
	var got *http.Request
	var form url.Values
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, form = r, nil
		form, _ = url.ParseQuery(string(b))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"sid": "SM00000000000000000000000000000001", "status": "accepted", "error_code": null}`)
	}))
	t.Cleanup(ts.Close)
	s := newSender(t, twilio.Config{AccountSID: twiliotest.AccountSID, AuthToken: twiliotest.AuthToken,
		MessagingServiceSID: service, BaseURL: ts.URL + "/"})
	m, err := s.Send(t.Context(), "+14155552671", "Ünïcode & symbols = fine")
	if err != nil || m.SID != "SM00000000000000000000000000000001" || m.Status != "accepted" {
		t.Fatalf("Send = %+v, %v", m, err)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/2010-04-01/Accounts/"+twiliotest.AccountSID+"/Messages.json" {
		t.Errorf("request %s %s", got.Method, got.URL.Path)
	}
	if u, p, ok := got.BasicAuth(); !ok || u != twiliotest.AccountSID || p != twiliotest.AuthToken {
		t.Errorf("basic auth %q %q %v", u, p, ok)
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type %q", ct)
	}
	want := url.Values{"To": {"+14155552671"}, "MessagingServiceSid": {service}, "Body": {"Ünïcode & symbols = fine"}}
	if form.Encode() != want.Encode() {
		t.Errorf("form %v, want %v", form, want)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		fail    twiliotest.Failure
		code    auth.Code // of SendSMS's *auth.Error
		says    string    // in the person's message
		logSays string    // in the error for the operator
	}{
		{"InvalidTo", twiliotest.Failure{Status: 400, Code: 21211, Message: "Invalid 'To' Phone Number: +1555"},
			auth.CodeInvalid, "cannot receive text messages", "not a valid phone number"},
		{"NotMobile", twiliotest.Failure{Status: 400, Code: 21614, Message: "'To' number is not a valid mobile number"},
			auth.CodeInvalid, "cannot receive text messages", "not a mobile number"},
		{"OptedOut", twiliotest.Failure{Status: 400, Code: 21610, Message: "Attempt to send to unsubscribed recipient"},
			auth.CodeInvalid, "replied STOP", "reply START"},
		{"GeoPermission", twiliotest.Failure{Status: 400, Code: 21408, Message: "Permission to send an SMS has not been enabled for the region"},
			auth.CodeInvalid, "that country", "Geo permissions"},
		{"TrialUnverified", twiliotest.Failure{Status: 400, Code: 21608, Message: "The number is unverified. Trial accounts cannot send messages to unverified numbers"},
			auth.CodeUnavailable, "could not send the text message", "trial account"},
		{"AuthFailed", twiliotest.Failure{Status: 401, Code: 20003, Message: "Authenticate"},
			auth.CodeUnavailable, "could not send the text message", "check the Twilio account SID and auth token"},
		{"RateLimited", twiliotest.Failure{Status: 429, Code: 20429, Message: "Too Many Requests"},
			auth.CodeUnavailable, "Try again in a few minutes", "rate-limiting"},
		{"ServerError", twiliotest.Failure{Status: 500, Body: "<html><body><h1>500 Internal Server Error</h1></body></html>"},
			auth.CodeUnavailable, "Try again in a few minutes", "HTTP 500: <html><body><h1>500 Internal Server Error"},
		{"Unavailable", twiliotest.Failure{Status: 503, Code: 20500, Message: "Service Unavailable"},
			auth.CodeUnavailable, "Try again in a few minutes", "Twilio is failing or overloaded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := twiliotest.New(t)
			srv.Fail(&tc.fail)
			err := newSender(t, config(srv)).SendSMS(t.Context(), auth.SMS{To: "+14155552671", Body: "123456 is your code"})
			if auth.ErrorCode(err) != tc.code || !strings.Contains(auth.ErrorMessage(err), tc.says) {
				t.Errorf("SendSMS = %v (code %s, message %q); want %s saying %q", err, auth.ErrorCode(err), auth.ErrorMessage(err), tc.code, tc.says)
			}
			var te *twilio.Error
			if !errors.As(err, &te) || te.Status != tc.fail.Status || te.Code != tc.fail.Code {
				t.Fatalf("SendSMS = %v, want a *twilio.Error with status %d and code %d", err, tc.fail.Status, tc.fail.Code)
			}
			if !strings.Contains(err.Error(), tc.logSays) {
				t.Errorf("error %q does not say %q", err, tc.logSays)
			}
			if tc.fail.Code != 0 && !strings.Contains(err.Error(), "https://www.twilio.com/docs/errors/") {
				t.Errorf("error %q does not carry Twilio's more_info link", err)
			}
			if len(srv.Messages()) != 0 {
				t.Errorf("a refused message counts as sent")
			}
		})
	}
}

func TestWrongTokenIsNeverShown(t *testing.T) {
	t.Parallel()
	srv := twiliotest.New(t)
	cfg := config(srv)
	cfg.AuthToken = "wrong-secret-token-value"
	_, err := newSender(t, cfg).Send(t.Context(), "+14155552671", "x")
	var te *twilio.Error
	if !errors.As(err, &te) || te.Status != 401 || te.Code != 20003 {
		t.Fatalf("Send with a wrong token = %v, want Twilio's 401 / 20003", err)
	}
	if strings.Contains(err.Error(), cfg.AuthToken) {
		t.Errorf("error shows the token: %q", err)
	}
	cfg.AccountSID = "AC" + strings.Repeat("f", 32) // an account the token is not for
	cfg.AuthToken = twiliotest.AuthToken
	_, err = newSender(t, cfg).Send(t.Context(), "+14155552671", "x")
	if !errors.As(err, &te) || te.Code != 20003 || strings.Contains(err.Error(), twiliotest.AuthToken) {
		t.Fatalf("Send for another account = %v, want 20003 without the token", err)
	}
}

func TestNotAMessage(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "<html>captive portal</html>")
	}))
	t.Cleanup(ts.Close)
	cfg := twilio.Config{AccountSID: twiliotest.AccountSID, AuthToken: twiliotest.AuthToken, From: from, BaseURL: ts.URL}
	_, err := newSender(t, cfg).Send(t.Context(), "+14155552671", "x")
	if err == nil || !strings.Contains(err.Error(), "not a message") || !strings.Contains(err.Error(), "captive portal") {
		t.Fatalf("Send to a server answering HTML = %v, want an error that shows the answer", err)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	srv := twiliotest.New(t)
	srv.Hang()
	cfg := config(srv)
	cfg.Timeout = 200 * time.Millisecond
	start := time.Now()
	err := newSender(t, cfg).SendSMS(t.Context(), auth.SMS{To: "+14155552671", Body: "x"})
	if !errors.Is(err, context.DeadlineExceeded) || auth.ErrorCode(err) != auth.CodeUnavailable {
		t.Fatalf("SendSMS to a silent server = %v, want CodeUnavailable after the deadline", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("SendSMS took %s with a 200ms timeout", d)
	}
	// The caller's context bounds it too.
	cfg.Timeout = time.Hour
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := newSender(t, cfg).Send(ctx, "+14155552671", "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled context = %v", err)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	good := twilio.Config{AccountSID: twiliotest.AccountSID, AuthToken: "t", From: from}
	for name, tc := range map[string]struct {
		mutate func(c *twilio.Config)
		ok     bool
	}{
		"Default":          {func(c *twilio.Config) {}, true},
		"HTTPS":            {func(c *twilio.Config) { c.BaseURL = "https://twilio-proxy.example.com/base" }, true},
		"LoopbackHTTP":     {func(c *twilio.Config) { c.BaseURL = "http://127.0.0.1:8080" }, true},
		"LoopbackV6":       {func(c *twilio.Config) { c.BaseURL = "http://[::1]:8080" }, true},
		"Localhost":        {func(c *twilio.Config) { c.BaseURL = "http://localhost:8080" }, true},
		"MessagingService": {func(c *twilio.Config) { c.From, c.MessagingServiceSID = "", "MG0123456789ABCDEF0123456789ABCDEF" }, true},
		"PlainHTTP":        {func(c *twilio.Config) { c.BaseURL = "http://api.twilio.com" }, false},
		"PlainHTTPPrivate": {func(c *twilio.Config) { c.BaseURL = "http://10.0.0.1" }, false},
		"UserInURL":        {func(c *twilio.Config) { c.BaseURL = "https://AC:tok@api.twilio.com" }, false},
		"OtherScheme":      {func(c *twilio.Config) { c.BaseURL = "ftp://api.twilio.com" }, false},
		"BadSID":           {func(c *twilio.Config) { c.AccountSID = "SK0123456789abcdef0123456789abcdef" }, false},
		"ShortSID":         {func(c *twilio.Config) { c.AccountSID = "AC0123" }, false},
		"NoToken":          {func(c *twilio.Config) { c.AuthToken = "" }, false},
		"NoSender":         {func(c *twilio.Config) { c.From = "" }, false},
		"BothSenders":      {func(c *twilio.Config) { c.MessagingServiceSID = "MG0123456789abcdef0123456789abcdef" }, false},
		"BadService":       {func(c *twilio.Config) { c.From, c.MessagingServiceSID = "", "MGnope" }, false},
		"NegativeTimeout":  {func(c *twilio.Config) { c.Timeout = -time.Second }, false},
	} {
		c := good
		tc.mutate(&c)
		if _, err := twilio.New(c); (err == nil) != tc.ok {
			t.Errorf("%s: New = %v, want ok %v", name, err, tc.ok)
		}
	}
	_, err := twilio.New(twilio.Config{AccountSID: "x", BaseURL: "http://example.com"})
	for _, want := range []string{"account SID", "auth token", "from:", "base URL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(all wrong) = %v, want it to mention %q", err, want)
		}
	}
}
