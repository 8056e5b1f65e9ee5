package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hestami/hestami/config"
)

func TestStorageSettings(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		yaml    string
		env     map[string]string
		want    config.Storage
		wantErr []string
	}{
		{name: "defaults", want: config.Storage{PartSize: 16 << 20, UploadConcurrency: 4}},
		{
			name: "file",
			yaml: "storage:\n  url: s3://b/p\n  allow_insecure_http: true\n  part_size: 64MiB\n  upload_concurrency: 8\n",
			want: config.Storage{URL: "s3://b/p", AllowInsecureHTTP: true, PartSize: 64 << 20, UploadConcurrency: 8},
		},
		{
			name: "bytes in the file, environment over it",
			yaml: "storage:\n  part_size: 8388608\n",
			env:  map[string]string{"HESTAMI_STORAGE_ALLOW_HTTP": "1", "HESTAMI_STORAGE_PART_SIZE": "32MiB", "HESTAMI_STORAGE_UPLOAD_CONCURRENCY": "2"},
			want: config.Storage{AllowInsecureHTTP: true, PartSize: 32 << 20, UploadConcurrency: 2},
		},
		{
			name:    "out of range",
			yaml:    "storage:\n  part_size: 1MiB\n  upload_concurrency: 0\n",
			wantErr: []string{"storage.part_size: 1MiB: want 5MiB to 5GiB", "storage.upload_concurrency: 0"},
		},
		{name: "not a size", yaml: "storage:\n  part_size: lots\n", wantErr: []string{`"lots" is not a size`}},
		{name: "bad env", env: map[string]string{"HESTAMI_STORAGE_PART_SIZE": "16 MB", "HESTAMI_STORAGE_ALLOW_HTTP": "maybe"},
			wantErr: []string{"HESTAMI_STORAGE_PART_SIZE", "HESTAMI_STORAGE_ALLOW_HTTP"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.yaml != "" {
				path = filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
				if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := config.Load(path, env(tc.env))
			if len(tc.wantErr) > 0 {
				for _, w := range tc.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("Load = %v, want an error mentioning %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Storage != tc.want {
				t.Errorf("storage = %+v, want %+v", c.Storage, tc.want)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]config.ByteSize{"0": 0, "5242880": 5 << 20, "512KiB": 512 << 10, "16mib": 16 << 20, "1 GiB": 1 << 30, "7B": 7} {
		var b config.ByteSize
		if err := b.Set(in); err != nil || b != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "16MB", "99999999999GiB"} {
		var b config.ByteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, b)
		}
	}
	for b, want := range map[config.ByteSize]string{16 << 20: "16MiB", 1 << 30: "1GiB", 1536: "1536", 2048: "2KiB", 0: "0"} {
		if got := b.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int64(b), got, want)
		}
	}
}
