package file_test

import (
	"testing"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/backup/storagetest"
	"github.com/hestami/hestami/file"
)

func TestStorageContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) backup.Storage {
		s, err := file.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
