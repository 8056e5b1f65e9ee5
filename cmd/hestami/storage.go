package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/blob"
	"github.com/hestami/hestami/config"
	"github.com/hestami/hestami/file"
)

// storage opens the storage at rawURL with the configured storage settings.
func (p *Program) storage(rawURL string) (backup.Storage, error) {
	return openStorageWith(context.Background(), rawURL, p.cfg.Storage)
}

// openStorage opens the storage at rawURL with the default storage settings.
func openStorage(rawURL string) (backup.Storage, error) {
	return openStorageWith(context.Background(), rawURL, config.Default().Storage)
}

// openStorageWith opens the storage at rawURL: a directory (file:///path, or a plain
// path) through the file package, which fsyncs and links for create-if-absent, or an
// object store (s3://, azblob://, gs://) through the blob package.
func openStorageWith(ctx context.Context, rawURL string, cfg config.Storage) (backup.Storage, error) {
	if strings.HasPrefix(rawURL, "/") || strings.HasPrefix(rawURL, ".") {
		return fileStorage(rawURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("storage URL %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "file":
		p := u.Path
		if u.Host != "" && u.Host != "localhost" {
			p = filepath.Join(u.Host, p) // file://relative/dir
		}
		return fileStorage(p)
	case "s3", "azblob", "gs":
		s, err := blob.Open(ctx, rawURL, blob.Options{
			AllowHTTP:         cfg.AllowInsecureHTTP,
			PartSize:          int(cfg.PartSize),
			UploadConcurrency: cfg.UploadConcurrency,
		})
		if err != nil {
			return nil, err // not a nil *blob.Storage in a non-nil interface
		}
		return s, nil
	}
	return nil, fmt.Errorf("storage URL %q: unknown scheme %q: use file:///path, s3://bucket/prefix, azblob://container/prefix or gs://bucket/prefix", rawURL, u.Scheme)
}

func fileStorage(dir string) (backup.Storage, error) {
	s, err := file.New(dir)
	if err != nil {
		return nil, err
	}
	return s, nil
}
