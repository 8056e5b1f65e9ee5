package oauth

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestFlexBool(t *testing.T) {
	cases := []struct {
		name string
		json string
		want bool
	}{
		{"true", `true`, true},
		{"false", `false`, false},
		{"string true (LinkedIn)", `"true"`, true},
		{"string TRUE", `"TRUE"`, true},
		{"string false", `"false"`, false},
		{"string one", `"1"`, true},
		{"number one", `1`, true},
		{"number zero", `0`, false},
		{"null", `null`, false},
		{"other string", `"yes"`, false},
		{"object", `{"value":true}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v struct {
				B flexBool `json:"b"`
			}
			if err := json.Unmarshal([]byte(`{"b":`+tc.json+`}`), &v); err != nil {
				t.Fatal(err)
			}
			if bool(v.B) != tc.want {
				t.Errorf("%s = %v, want %v", tc.json, v.B, tc.want)
			}
		})
	}
}

// FuzzClaims: whatever a provider puts in its claims, decoding them never panics,
// and a claim counts as verified only when it says true.
func FuzzClaims(f *testing.F) {
	for _, s := range []string{`{"email_verified":"true"}`, `{"xms_edov":1}`, `{"tid":"x","oid":7}`, `{"email_verified":[true]}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c claims
		if err := json.Unmarshal(data, &c); err != nil {
			return
		}
		var raw map[string]any
		if json.Unmarshal(data, &raw) != nil {
			return
		}
		if !c.EmailVerified {
			return
		}
		// encoding/json matches keys case-insensitively: some spelling of
		// email_verified must have said true.
		said := false
		for k, v := range raw {
			if !strings.EqualFold(k, "email_verified") {
				continue
			}
			switch v := v.(type) {
			case bool:
				said = said || v
			case string:
				said = said || strings.EqualFold(v, "true") || v == "1"
			case float64:
				said = said || v == 1
			}
		}
		if !said {
			t.Errorf("%s: email_verified decoded as true", data)
		}
	})
}
