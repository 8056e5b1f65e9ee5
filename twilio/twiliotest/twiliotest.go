// Package twiliotest is a loopback stand-in for Twilio's Messages API, for
// tests: it checks each request as Twilio would (path, basic auth, form) and
// keeps the messages it accepted, and it can be told to refuse with any of
// Twilio's errors.
package twiliotest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test credentials: a well-formed account SID and a token.
const (
	AccountSID = "AC0123456789abcdef0123456789abcdef"
	AuthToken  = "twiliotest-auth-token-0123456789"
)

// Message is one message the server accepted (or was asked to send, with
// Refused set when it answered with an error).
type Message struct {
	SID                 string
	To                  string
	From                string
	MessagingServiceSID string
	Body                string
	Refused             bool
}

// Failure makes the server refuse: it answers Status with Twilio's JSON error
// Code and Message (Code 0 and a Body: that body as is, like a proxy's HTML
// page).
type Failure struct {
	Status  int
	Code    int
	Message string
	Body    string
}

// Server is a fake Twilio API on a free loopback port.
type Server struct {
	// URL is the base URL to give twilio.Config.BaseURL.
	URL string

	mu       sync.Mutex
	msgs     []Message
	requests int
	fail     *Failure
	hang     chan struct{}
}

// New starts a server, closed when the test ends. It accepts requests for
// AccountSID authenticated with AuthToken.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		s.mu.Lock()
		if s.hang != nil {
			close(s.hang)
			s.hang = nil
		}
		s.mu.Unlock()
		ts.Close()
	})
	s.URL = ts.URL
	return s
}

// Fail makes every later request fail with f; nil makes them succeed again.
func (s *Server) Fail(f *Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = f
}

// Hang makes every later request wait until the client gives up (or the test
// ends): for timeouts.
func (s *Server) Hang() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hang == nil {
		s.hang = make(chan struct{})
	}
}

// Messages returns the messages accepted so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.msgs {
		if !m.Refused {
			out = append(out, m)
		}
	}
	return out
}

// Requests counts the requests that reached the Messages endpoint.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Last returns the newest accepted message, failing the test if there is none.
func (s *Server) Last(t testing.TB) Message {
	t.Helper()
	ms := s.Messages()
	if len(ms) == 0 {
		t.Fatal("twiliotest: no message was sent")
	}
	return ms[len(ms)-1]
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"code": code, "message": msg, "more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), "status": status,
	})
}

// ServeHTTP answers as Twilio's API does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := "/2010-04-01/Accounts/" + AccountSID + "/Messages.json"
	if !strings.HasPrefix(r.URL.Path, "/2010-04-01/Accounts/") || !strings.HasSuffix(r.URL.Path, "/Messages.json") {
		writeError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(user+":"+pass), []byte(AccountSID+":"+AuthToken)) != 1 || r.URL.Path != path {
		w.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
		writeError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, 20004, "Method not allowed")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		writeError(w, http.StatusBadRequest, 20001, "Content-Type "+ct+" is not a form")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, 20001, "Bad form: "+err.Error())
		return
	}
	m := Message{To: r.PostForm.Get("To"), From: r.PostForm.Get("From"), MessagingServiceSID: r.PostForm.Get("MessagingServiceSid"), Body: r.PostForm.Get("Body")}
	s.mu.Lock()
	s.requests++
	fail, hang := s.fail, s.hang
	s.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
		return
	}
	record := func(refused bool) {
		m.Refused = refused
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
	}
	switch {
	case fail != nil:
		record(true)
		if fail.Code == 0 {
			w.WriteHeader(fail.Status)
			fmt.Fprint(w, fail.Body)
			return
		}
		writeError(w, fail.Status, fail.Code, fail.Message)
		return
	case m.To == "":
		writeError(w, http.StatusBadRequest, 21604, "A 'To' phone number is required.")
		return
	case !e164(m.To):
		writeError(w, http.StatusBadRequest, 21211, "Invalid 'To' Phone Number: "+m.To)
		return
	case m.From == "" && m.MessagingServiceSID == "":
		writeError(w, http.StatusBadRequest, 21603, "A 'From' phone number is required.")
		return
	case m.Body == "":
		writeError(w, http.StatusBadRequest, 21602, "Message body is required.")
		return
	}
	var b [16]byte
	rand.Read(b[:])
	m.SID = "SM" + hex.EncodeToString(b[:])
	record(false)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	now := time.Now().UTC().Format(time.RFC1123Z)
	json.NewEncoder(w).Encode(map[string]any{
		"sid": m.SID, "account_sid": AccountSID, "to": m.To, "from": nullable(m.From),
		"messaging_service_sid": nullable(m.MessagingServiceSID), "body": m.Body, "status": "queued",
		"num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
		"date_created": now, "date_updated": now, "error_code": nil, "error_message": nil,
		"uri": "/2010-04-01/Accounts/" + AccountSID + "/Messages/" + m.SID + ".json",
	})
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func e164(s string) bool {
	return len(s) >= 8 && len(s) <= 16 && s[0] == '+' && strings.Trim(s[1:], "0123456789") == ""
}
