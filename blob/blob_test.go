package blob_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/backup/storagetest"
	"github.com/hestami/hestami/blob"
	"github.com/hestami/hestami/blobtest"
)

// testOptions keep the contract's large-object test within its memory bound: S3
// holds up to UploadConcurrency+1 parts of an upload in memory.
var testOptions = blob.Options{AllowHTTP: true, PartSize: 8 << 20, UploadConcurrency: 2}

func open(t *testing.T, rawURL string) *blob.Storage {
	t.Helper()
	s, err := blob.Open(t.Context(), rawURL, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func backend(newTarget func(testing.TB) blobtest.Target) storagetest.Backend {
	return storagetest.Backend{
		New: func(t *testing.T) backup.Storage { return open(t, newTarget(t).URL) },
		Faulty: func(t *testing.T) (backup.Storage, storagetest.Faults) {
			tg := newTarget(t)
			return open(t, tg.URL), tg.Faults
		},
	}
}

func TestS3Contract(t *testing.T) {
	t.Parallel()
	blobtest.S3(t) // one emulator for every subtest
	storagetest.RunBackend(t, backend(blobtest.S3))
}

func TestGCSContract(t *testing.T) {
	t.Parallel()
	blobtest.GCS(t)
	storagetest.RunBackend(t, backend(blobtest.GCS))
}

func TestAzureContract(t *testing.T) {
	t.Parallel()
	blobtest.Azure(t)
	storagetest.RunBackend(t, backend(blobtest.Azure))
}

var targets = []struct {
	name string
	new  func(testing.TB) blobtest.Target
}{
	{"s3", blobtest.S3},
	{"gs", blobtest.GCS},
	{"azblob", blobtest.Azure},
}

// TestPrefix: a URL's path is a key prefix; storages under different prefixes of
// one bucket do not see each other's objects, and the bucket holds them under it.
func TestPrefix(t *testing.T) {
	t.Parallel()
	storagetest.Share(t)
	for _, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			tg := tt.new(t)
			ctx := t.Context()
			u, err := url.Parse(tg.URL)
			if err != nil {
				t.Fatal(err)
			}
			withPath := func(p string) string { v := *u; v.Path = p; return v.String() }
			a, b, root := open(t, withPath("/site/a")), open(t, withPath("/site/b/")), open(t, tg.URL)
			if err := a.Put(ctx, "wal/1", strings.NewReader("from a"), true); err != nil {
				t.Fatal(err)
			}
			if err := b.Put(ctx, "wal/1", strings.NewReader("from b"), true); err != nil {
				t.Fatalf("the same key under another prefix: %v", err)
			}
			for _, tc := range []struct {
				s    *blob.Storage
				want string
			}{{a, "[wal/1]"}, {b, "[wal/1]"}, {root, "[site/a/wal/1 site/b/wal/1]"}} {
				objs, err := tc.s.List(ctx, "")
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, o := range objs {
					got = append(got, o.Key)
				}
				if s := "[" + strings.Join(got, " ") + "]"; s != tc.want {
					t.Errorf("%s lists %s, want %s", tc.s, s, tc.want)
				}
			}
			rc, err := root.Open(ctx, "site/b/wal/1")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != "from b" {
				t.Errorf("site/b/wal/1 holds %q, want %q", got, "from b")
			}
			if a.String() != withPath("/site/a") {
				t.Errorf("String() = %q, want the URL %q", a.String(), withPath("/site/a"))
			}
		})
	}
}

// TestMissingBucket: an object in a bucket that does not exist is not "not found"
// (wal fetch would report the end of the archive), and the error says why.
func TestMissingBucket(t *testing.T) {
	t.Parallel()
	storagetest.Share(t)
	for _, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			tg := tt.new(t)
			s := open(t, strings.Replace(tg.URL, tg.Bucket, tg.Bucket+"-missing", 1))
			ctx := t.Context()
			_, err := s.Open(ctx, "wal/00000001.history")
			if err == nil || errors.Is(err, backup.ErrNotFound) {
				t.Fatalf("Open in a missing bucket = %v, want an error other than ErrNotFound", err)
			}
			if !strings.Contains(err.Error(), "does not exist") {
				t.Errorf("Open in a missing bucket: %v; want it to say the bucket does not exist", err)
			}
			if _, err := s.Stat(ctx, "x"); err == nil || errors.Is(err, backup.ErrNotFound) {
				t.Errorf("Stat in a missing bucket = %v, want an error other than ErrNotFound", err)
			}
			if _, err := s.List(ctx, ""); err == nil {
				t.Error("List of a missing bucket succeeded")
			}
			if err := s.Put(ctx, "x", strings.NewReader("x"), true); err == nil || errors.Is(err, backup.ErrExist) {
				t.Errorf("Put into a missing bucket = %v, want an error", err)
			}
		})
	}
}

// TestPlainHTTPRefused: without AllowHTTP, no URL or environment that would send
// backups unencrypted is opened, and the error says how to allow it for an emulator.
func TestPlainHTTPRefused(t *testing.T) {
	for _, tc := range []struct {
		name, url string
		env       map[string]string
	}{
		{"s3 http endpoint", "s3://b?endpoint=http://127.0.0.1:9000&use_path_style=true&region=x", nil},
		{"s3 disable_https", "s3://b/p?disable_https=true&region=x", nil},
		{"s3 AWS_ENDPOINT_URL", "s3://b?region=x", map[string]string{"AWS_ENDPOINT_URL": "http://minio:9000"}},
		{"s3 AWS_ENDPOINT_URL_S3", "s3://b?region=x", map[string]string{"AWS_ENDPOINT_URL_S3": "HTTP://minio:9000"}},
		{"azblob protocol=http", "azblob://c?protocol=http&domain=127.0.0.1:10000&localemu=true", nil},
		{"azblob AZURE_STORAGE_PROTOCOL", "azblob://c", map[string]string{"AZURE_STORAGE_PROTOCOL": "http"}},
		{"azblob connection string", "azblob://c", map[string]string{"AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=k;BlobEndpoint=http://127.0.0.1:10000/a;"}},
		{"gs emulator", "gs://b", map[string]string{"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := blob.Open(context.Background(), tc.url, blob.Options{})
			if err == nil {
				t.Fatalf("Open(%s) succeeded, want plain HTTP refused", tc.url)
			}
			for _, want := range []string{"TLS", "allow_insecure_http", "HESTAMI_STORAGE_ALLOW_HTTP=1"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open(%s): %v; want it to mention %s", tc.url, err, want)
				}
			}
		})
	}
}

// TestOpenRejects: URLs Open cannot use are refused with a reason, before any request.
func TestOpenRejects(t *testing.T) {
	for _, tc := range []struct {
		name, url string
		opts      blob.Options
		want      string
	}{
		{"unknown scheme", "ftp://host/dir", blob.Options{}, "s3://bucket/prefix"},
		{"no bucket", "s3:///prefix", blob.Options{}, "no bucket"},
		{"prefix twice", "gs://b/p?prefix=q/", blob.Options{AllowHTTP: true}, "not both"},
		{"small parts", "s3://b?region=x", blob.Options{PartSize: 1 << 20}, "5 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := blob.Open(context.Background(), tc.url, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open(%s) = %v, want an error mentioning %q", tc.url, err, tc.want)
			}
		})
	}
}

// TestS3FailedUploadAborted: a Put that fails, or whose context is cancelled, after
// several parts aborts its multipart upload, so no parts linger (and cost) in the
// bucket.
func TestS3FailedUploadAborted(t *testing.T) {
	t.Parallel()
	storagetest.Share(t)
	tg := blobtest.S3(t)
	s := open(t, tg.URL)
	r := io.MultiReader(io.LimitReader(zeros{}, 30<<20), errorAfter{})
	if err := s.Put(t.Context(), "big", r, true); err == nil {
		t.Fatal("Put with a failing reader succeeded")
	}
	checkNoUploads(t, tg)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r = io.LimitReader(&cancelAt{n: 30 << 20, cancel: cancel}, 60<<20)
	if err := s.Put(ctx, "big", r, false); err == nil {
		t.Fatal("Put whose context was cancelled succeeded")
	}
	checkNoUploads(t, tg)
}

func checkNoUploads(t *testing.T, tg blobtest.Target) {
	t.Helper()
	resp, err := http.Get(tg.Endpoint + "/" + tg.Bucket + "?uploads")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("list multipart uploads: %s\n%s", resp.Status, body)
	}
	if strings.Contains(string(body), "<Upload>") {
		t.Errorf("multipart uploads left after a failed Put:\n%s", body)
	}
}

// cancelAt reads zeros and cancels once n bytes went out.
type cancelAt struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelAt) Read(p []byte) (int, error) {
	clear(p)
	if c.n -= len(p); c.n <= 0 {
		c.cancel()
	}
	return len(p), nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type errorAfter struct{}

func (errorAfter) Read([]byte) (int, error) { return 0, errors.New("source broke") }

// TestRetriesBeyondTheSDK: hestami retries a read once more after the SDK's own
// retries ran out (GCS's client tries 4 times, as Open configures it).
func TestRetriesBeyondTheSDK(t *testing.T) {
	t.Parallel()
	storagetest.Share(t)
	tg := blobtest.GCS(t)
	s := open(t, tg.URL)
	ctx := t.Context()
	if err := s.Put(ctx, "k", strings.NewReader("v"), false); err != nil {
		t.Fatal(err)
	}
	tg.Faults.Fail(5, http.StatusServiceUnavailable)
	if _, err := s.Stat(ctx, "k"); err != nil {
		t.Fatalf("Stat after 5 failed requests: %v; want the 6th to succeed", err)
	}
	if n := tg.Faults.Requests(); n != 6 {
		t.Errorf("Stat took %d requests, want 6: 4 by the SDK, then 2 more in hestami's retry", n)
	}
}
