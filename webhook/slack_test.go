package webhook_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hestami/hestami/alert"
	"github.com/hestami/hestami/alert/alerttest"
	"github.com/hestami/hestami/webhook"
)

func TestSlackMessageShape(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(webhook.NewSlackMessage(alerttest.Sample(alert.Repeat)))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
			Elements []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"elements"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.Text, "CRITICAL (still firing): Archivage bloqué") || !strings.Contains(got.Text, "Seen:       7 times") {
		t.Errorf("text = %q, want the whole message as plain text", got.Text)
	}
	if len(got.Blocks) != 3 {
		t.Fatalf("%d blocks, want title, details, context: %s", len(got.Blocks), b)
	}
	title, details, context := got.Blocks[0], got.Blocks[1], got.Blocks[2]
	if title.Type != "section" || title.Text.Type != "mrkdwn" || title.Text.Text != "*CRITICAL (still firing): Archivage bloqué — WAL archiving stalled on db1*" {
		t.Errorf("title block = %+v", title)
	}
	if details.Type != "section" || !strings.HasPrefix(details.Text.Text, "5 segments are waiting") {
		t.Errorf("details block = %+v", details)
	}
	if context.Type != "context" || len(context.Elements) != 2 ||
		context.Elements[0].Text != "State: repeat | Severity: critical | Alert: archiving-stalled | Since: 2025-03-04T05:06:07Z | Seen: 7 times" ||
		context.Elements[1].Text != "cluster=main, instance=db1" {
		t.Errorf("context block = %+v", context)
	}
}

func TestSlackMessageEscapes(t *testing.T) {
	t.Parallel()
	n := alerttest.Sample(alert.Firing)
	n.Summary = "size <b>&</b> <!channel>"
	n.Details = strings.Repeat("x", 5000)
	m := webhook.NewSlackMessage(n)
	if want := "*CRITICAL: size &lt;b&gt;&amp;&lt;/b&gt; &lt;!channel&gt;*"; m.Blocks[0].Text.Text != want {
		t.Errorf("title = %q, want %q (no mention, no markup)", m.Blocks[0].Text.Text, want)
	}
	if strings.Contains(m.Text, "<!channel>") {
		t.Errorf("text lets a summary ping the channel: %q", m.Text)
	}
	if n := len([]rune(m.Blocks[1].Text.Text)); n > 3000 {
		t.Errorf("details section has %d characters, over Slack's 3000", n)
	}
}
