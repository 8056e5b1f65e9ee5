package webhook

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hestami/hestami/alert"
)

// SlackMessage is the body of a Slack incoming webhook. Text carries the whole message
// (Mattermost shows it, Slack uses it in push notifications); Blocks lay it out in
// Slack. Severity is spelled out in words, never as an emoji, so the message reads the
// same in every client and in mail digests.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks,omitempty"`
}

// SlackBlock is a Block Kit block: a section (Text) or a context (Elements).
type SlackBlock struct {
	Type     string      `json:"type"`
	Text     *SlackText  `json:"text,omitempty"`
	Elements []SlackText `json:"elements,omitempty"`
}

// SlackText is a Block Kit text object.
type SlackText struct {
	Type string `json:"type"` // mrkdwn
	Text string `json:"text"`
}

// Slack's limit on a section's text is 3000 characters; stay below it.
const slackSectionMax = 2900

// NewSlackMessage formats n for Slack: a bold title, the details, then the facts.
func NewSlackMessage(n alert.Notification) SlackMessage {
	m := SlackMessage{Text: slackEscape(truncate(n.Text(), 3*slackSectionMax))}
	m.Blocks = append(m.Blocks, SlackBlock{Type: "section", Text: &SlackText{Type: "mrkdwn",
		Text: "*" + slackEscape(truncate(n.Title(), slackSectionMax)) + "*"}})
	if d := strings.TrimSpace(n.Details); d != "" {
		m.Blocks = append(m.Blocks, SlackBlock{Type: "section", Text: &SlackText{Type: "mrkdwn",
			Text: slackEscape(truncate(d, slackSectionMax))}})
	}
	facts := []string{"State: " + string(n.State), "Severity: " + string(n.Severity), "Alert: " + n.Key}
	switch n.State {
	case alert.Event:
		facts = append(facts, "Time: "+utc(n.Time))
	case alert.Resolved:
		facts = append(facts, "Since: "+utc(n.FirstSeen), "Resolved: "+utc(n.ResolvedAt))
	default:
		facts = append(facts, "Since: "+utc(n.FirstSeen), fmt.Sprintf("Seen: %d times", n.Count))
	}
	context := []SlackText{{Type: "mrkdwn", Text: slackEscape(strings.Join(facts, " | "))}}
	if len(n.Labels) > 0 {
		var labels []string
		for _, k := range slices.Sorted(maps.Keys(n.Labels)) {
			labels = append(labels, k+"="+n.Labels[k])
		}
		context = append(context, SlackText{Type: "mrkdwn", Text: slackEscape(truncate(strings.Join(labels, ", "), 1900))})
	}
	m.Blocks = append(m.Blocks, SlackBlock{Type: "context", Elements: context})
	return m
}

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func utc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// truncate cuts s to at most n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
