package auth_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
)

func TestLogSMSSender(t *testing.T) {
	t.Parallel()
	var log codesLog
	s := auth.NewLogSMSSender(slog.New(slog.NewTextHandler(&log, nil)))
	if err := s.SendSMS(t.Context(), auth.SMS{To: "+14155552671", Body: "123456 is your Hestami code."}); err != nil {
		t.Fatal(err)
	}
	out := log.String()
	for _, want := range []string{"level=WARN", "development", "to=+14155552671", `body="123456 is your Hestami code."`} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}
