package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hestami/hestami/blob"
	"github.com/hestami/hestami/blobtest"
	"github.com/hestami/hestami/config"
	"github.com/hestami/hestami/file"
)

func TestOpenStorageDispatch(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, url string
		want      string // the storage's type, or a part of the error
	}{
		{"plain path", dir, "*file.Storage"},
		{"file URL", "file://" + dir, "*file.Storage"},
		{"s3 over TLS", "s3://bucket/prefix?region=eu-west-1", "*blob.Storage"},
		{"s3 over plain HTTP", "s3://bucket?endpoint=http://127.0.0.1:9&region=x", "allow_insecure_http"},
		{"unknown scheme", "ftp://host/dir", `unknown scheme "ftp"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := openStorageWith(context.Background(), tc.url, config.Default().Storage)
			got := fmt.Sprintf("%T", st)
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("openStorage(%s) = %s, want %s", tc.url, got, tc.want)
			}
			switch s := st.(type) {
			case *blob.Storage:
				s.Close()
			case *file.Storage:
			}
		})
	}
}

// TestStorageSettingsReachTheStore: the CLI takes the storage URL and the
// plain-HTTP permission from the environment; without the permission an emulator's
// URL is refused with the setting to use.
func TestStorageSettingsReachTheStore(t *testing.T) {
	t.Parallel()
	tg := blobtest.S3(t)
	run := func(vars map[string]string) (string, error) {
		var stdout, stderr bytes.Buffer
		getenv := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
		err := NewProgram(strings.NewReader(""), &stdout, &stderr, getenv).Run(t.Context(), []string{"backup", "list", "--json"})
		return stdout.String(), err
	}
	_, err := run(map[string]string{"HESTAMI_STORAGE_URL": tg.URL})
	if err == nil || !strings.Contains(err.Error(), "HESTAMI_STORAGE_ALLOW_HTTP=1") {
		t.Fatalf("backup list on a plain-HTTP endpoint = %v, want it refused naming HESTAMI_STORAGE_ALLOW_HTTP=1", err)
	}
	out, err := run(map[string]string{"HESTAMI_STORAGE_URL": tg.URL, "HESTAMI_STORAGE_ALLOW_HTTP": "1"})
	if err != nil {
		t.Fatalf("backup list with HESTAMI_STORAGE_ALLOW_HTTP=1: %v", err)
	}
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("backup list --json of an empty bucket = %q, want []", out)
	}
}
