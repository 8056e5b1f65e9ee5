package backup

import (
	"bytes"
)

// GlobalsPlan is a backup's globals script (pg_dumpall --globals-only) rewritten to
// leave alone what the server already has, so that restoring globals never changes an
// existing role (its password, attributes, settings or memberships) or tablespace, and
// running it twice is harmless: a role or tablespace is created, with everything the
// backup says about it, only if the server lacks it.
type GlobalsPlan struct {
	// Script is the rewritten script, for psql.
	Script []byte
	// CreatedRoles and CreatedTablespaces are what the script creates.
	CreatedRoles       []string
	CreatedTablespaces []string
	// ExistingRoles and ExistingTablespaces are in the backup and on the server
	// already: their statements were left out.
	ExistingRoles       []string
	ExistingTablespaces []string
	// Skipped counts the statements left out.
	Skipped int
}

// PlanGlobals rewrites a globals script given the roles and tablespaces the server
// has; see GlobalsPlan. Statements about an existing role (ALTER ROLE, COMMENT ON
// ROLE, SECURITY LABEL ... ON ROLE) or tablespace (ALTER, COMMENT, GRANT, REVOKE)
// are dropped with its CREATE; a role membership (GRANT a TO b) is kept only if a or b
// is new. Everything else (SET, psql meta-commands such as \restrict, parameter
// privileges, anything unknown) is kept as it is.
func PlanGlobals(script []byte, roles, tablespaces []string) *GlobalsPlan {
	hasRole := make(map[string]bool, len(roles))
	for _, r := range roles {
		hasRole[r] = true
	}
	hasSpc := make(map[string]bool, len(tablespaces))
	for _, t := range tablespaces {
		hasSpc[t] = true
	}
	p := &GlobalsPlan{}
	var out []byte
	for _, st := range splitSQL(script) {
		keep := true
		if !st.meta {
			toks := sqlTokens(st.text, 12)
			kw := func(i int, words ...string) bool {
				for k, w := range words {
					if i+k >= len(toks) || toks[i+k].quoted || toks[i+k].s != w {
						return false
					}
				}
				return true
			}
			name := func(i int) (string, bool) {
				if i < len(toks) && toks[i].ident() {
					return toks[i].s, true
				}
				return "", false
			}
			switch {
			case kw(0, "create", "role"):
				if r, ok := name(2); ok {
					if hasRole[r] {
						keep = false
						p.ExistingRoles = append(p.ExistingRoles, r)
					} else {
						p.CreatedRoles = append(p.CreatedRoles, r)
					}
				}
			case kw(0, "alter", "role") || kw(0, "alter", "user"):
				if r, ok := name(2); ok && hasRole[r] {
					keep = false
				}
			case kw(0, "comment", "on", "role"):
				if r, ok := name(3); ok && hasRole[r] {
					keep = false
				}
			case kw(0, "create", "tablespace"):
				if t, ok := name(2); ok {
					if hasSpc[t] {
						keep = false
						p.ExistingTablespaces = append(p.ExistingTablespaces, t)
					} else {
						p.CreatedTablespaces = append(p.CreatedTablespaces, t)
					}
				}
			case kw(0, "alter", "tablespace"):
				if t, ok := name(2); ok && hasSpc[t] {
					keep = false
				}
			case kw(0, "comment", "on", "tablespace"):
				if t, ok := name(3); ok && hasSpc[t] {
					keep = false
				}
			case kw(0, "grant") && kw(2, "to"):
				// A role membership: GRANT role TO member [WITH ...] [GRANTED BY ...].
				a, ok1 := name(1)
				b, ok2 := name(3)
				if ok1 && ok2 && hasRole[a] && hasRole[b] {
					keep = false
				}
			default:
				// GRANT/REVOKE ... ON TABLESPACE t, SECURITY LABEL ... ON ROLE|TABLESPACE x.
				if kw(0, "grant") || kw(0, "revoke") || kw(0, "security", "label") {
					for i := 1; i < len(toks); i++ {
						if kw(i, "on", "tablespace") {
							if t, ok := name(i + 2); ok && hasSpc[t] {
								keep = false
							}
							break
						}
						if kw(i, "on", "role") {
							if r, ok := name(i + 2); ok && hasRole[r] {
								keep = false
							}
							break
						}
					}
				}
			}
		}
		if !keep {
			p.Skipped++
			continue
		}
		out = append(out, st.text...)
		if len(st.text) > 0 && st.text[len(st.text)-1] != '\n' {
			out = append(out, '\n')
		}
	}
	p.Script = out
	return p
}

// sqlStatement is one statement of an SQL script, or one psql meta-command line.
type sqlStatement struct {
	text []byte
	meta bool
}

// splitSQL splits an SQL script into statements at the semicolons outside quotes,
// comments and dollar quotes, and keeps psql meta-command lines (\connect, \restrict)
// as statements of their own. It never fails and loses nothing: the statements joined
// are the script (text after the last semicolon is a last statement).
func splitSQL(b []byte) []sqlStatement {
	var out []sqlStatement
	start := 0
	blank := true // only white space and comments since start
	identByte := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
	}
	i := 0
	for i < len(b) {
		c := b[i]
		switch {
		case blank && c == '\\':
			end := i
			for end < len(b) && b[end] != '\n' {
				end++
			}
			if end < len(b) {
				end++
			}
			if i > start {
				out = append(out, sqlStatement{text: b[start:i]})
			}
			out = append(out, sqlStatement{text: b[i:end], meta: true})
			i, start = end, end
			continue
		}
		if j, ok := skipSpaceOrComment(b, i); ok {
			i = j
			continue
		}
		blank = false
		switch {
		case c == '\'':
			escapes := i > 0 && (b[i-1] == 'E' || b[i-1] == 'e') && (i < 2 || !identByte(b[i-2]))
			i = skipQuoted(b, i, escapes)
		case c == '"':
			i = skipQuoted(b, i, false)
		case c == '$' && (i == 0 || !identByte(b[i-1])):
			j := i + 1
			for j < len(b) && (identByte(b[j]) && !(j == i+1 && b[j] >= '0' && b[j] <= '9')) {
				j++
			}
			if j < len(b) && b[j] == '$' {
				tag := b[i : j+1]
				k := bytes.Index(b[j+1:], tag)
				if k < 0 {
					i = len(b)
				} else {
					i = j + 1 + k + len(tag)
				}
			} else {
				i++
			}
		case c == ';':
			i++
			// Keep the rest of the line (a trailing comment, the newline) with it.
			for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r') {
				i++
			}
			if i < len(b) && b[i] == '\n' {
				i++
			}
			out = append(out, sqlStatement{text: b[start:i]})
			start, blank = i, true
		default:
			i++
		}
	}
	if start < len(b) {
		out = append(out, sqlStatement{text: b[start:]})
	}
	return out
}

// sqlToken is a word of an SQL statement: a keyword or bare identifier (folded to
// lower case, as PostgreSQL does), a quoted identifier (unquoted, case kept) or a
// piece of punctuation or a literal.
type sqlToken struct {
	s      string
	quoted bool
	word   bool
}

func (t sqlToken) ident() bool { return t.quoted || t.word }

// sqlTokens returns up to max leading tokens of one statement, skipping comments.
func sqlTokens(b []byte, max int) []sqlToken {
	var toks []sqlToken
	i := 0
	for i < len(b) && len(toks) < max {
		c := b[i]
		if j, ok := skipSpaceOrComment(b, i); ok {
			i = j
			continue
		}
		switch {
		case c == '"':
			var s []byte
			i++
			for i < len(b) {
				if b[i] == '"' {
					if i+1 < len(b) && b[i+1] == '"' {
						s = append(s, '"')
						i += 2
						continue
					}
					break
				}
				s = append(s, b[i])
				i++
			}
			i++
			toks = append(toks, sqlToken{s: string(s), quoted: true})
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80:
			j := i
			for j < len(b) && (b[j] == '_' || b[j] == '$' || b[j] >= 'a' && b[j] <= 'z' || b[j] >= 'A' && b[j] <= 'Z' || b[j] >= '0' && b[j] <= '9' || b[j] >= 0x80) {
				j++
			}
			toks = append(toks, sqlToken{s: asciiLower(string(b[i:j])), word: true})
			i = j
		default:
			// A literal, number or punctuation: one opaque token is enough here.
			toks = append(toks, sqlToken{s: string(c)})
			if c == '\'' {
				i = skipQuoted(b, i, false)
			} else {
				i++
			}
		}
	}
	return toks
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// skipSpaceOrComment returns the index just past the whitespace character, line
// comment (-- to end of line) or block comment (/* ... */, nested) that starts at
// b[i], and whether there was one.
func skipSpaceOrComment(b []byte, i int) (int, bool) {
	switch c := b[i]; {
	case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
		return i + 1, true
	case c == '-' && i+1 < len(b) && b[i+1] == '-':
		for i < len(b) && b[i] != '\n' {
			i++
		}
		return i, true
	case c == '/' && i+1 < len(b) && b[i+1] == '*':
		depth := 0
		for i < len(b) {
			switch {
			case b[i] == '/' && i+1 < len(b) && b[i+1] == '*':
				depth++
				i += 2
			case b[i] == '*' && i+1 < len(b) && b[i+1] == '/':
				depth--
				i += 2
				if depth == 0 {
					return i, true
				}
			default:
				i++
			}
		}
		return i, true
	}
	return i, false
}

// skipQuoted returns the index just past the quoted string or identifier that
// starts at b[i] with its quote character: a doubled quote stands for itself, and
// with backslashes (E'...' strings) a backslash escapes the next byte. An
// unterminated one runs to the end.
func skipQuoted(b []byte, i int, backslashes bool) int {
	q := b[i]
	for i++; i < len(b); i++ {
		switch {
		case backslashes && b[i] == '\\':
			i++
		case b[i] == q && i+1 < len(b) && b[i+1] == q:
			i++
		case b[i] == q:
			return i + 1
		}
	}
	return len(b)
}
