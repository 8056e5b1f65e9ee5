package main

import (
	"context"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/postgres"
)

// The backups as `backup push` takes them, shared with `backup daemon`.

// physicalBackup returns the physical backup of the configured server into repo
// (its WAL in the WAL repository), ready to Run.
func (p *Program) physicalBackup(repo *backup.Repository, walTimeout time.Duration, prog backup.Progress) (*backup.PhysicalBackup, error) {
	walRepo := repo
	if p.cfg.Storage.WALURL != "" && p.cfg.Storage.WALURL != p.cfg.Storage.URL {
		var err error
		if walRepo, err = p.repository(true); err != nil {
			return nil, err
		}
		walRepo.Now = repo.Now
	}
	return &backup.PhysicalBackup{
		Repo:           repo,
		WALRepo:        walRepo,
		Source:         &postgres.Source{ConnString: p.cfg.Postgres.ConnString(""), Logger: p.logger},
		Parallel:       p.cfg.Backup.Parallel,
		WALTimeout:     walTimeout,
		Progress:       prog,
		Logger:         p.logger,
		Host:           p.serverHost(),
		HestamiVersion: version,
		Now:            repo.Now,
	}, nil
}

// logicalBackup takes a logical backup of the configured server into repo: the
// databases in only, or all of them. It returns the tools it dumped with, for the
// summary.
func (p *Program) logicalBackup(ctx context.Context, repo *backup.Repository, only []string, prog backup.Progress) (*backup.Manifest, postgres.Tools, error) {
	conn, err := postgres.Connect(ctx, p.cfg.Postgres.ConnString(""))
	if err != nil {
		return nil, postgres.Tools{}, err
	}
	info, err := postgres.Info(ctx, conn)
	if err != nil {
		conn.Close(ctx)
		return nil, postgres.Tools{}, err
	}
	dbs, err := postgres.Databases(ctx, conn)
	conn.Close(ctx)
	if err != nil {
		return nil, postgres.Tools{}, err
	}
	tools, err := p.tools(ctx, info.VersionNum/10000)
	if err != nil {
		return nil, postgres.Tools{}, err
	}
	b := &backup.LogicalBackup{
		Repo:           repo,
		Dumper:         tools,
		Progress:       prog,
		Logger:         p.logger,
		Parallel:       backup.DefaultDumpParallel,
		Concurrency:    p.cfg.Backup.Parallel,
		HestamiVersion: version,
		Now:            repo.Now,
	}
	m, err := b.Run(ctx, backup.LogicalRequest{
		Cluster: backup.ClusterInfo{
			SystemIdentifier: info.SystemIdentifier,
			WALSegmentSize:   info.WALSegmentSize,
			PGVersion:        info.VersionNum,
			Host:             p.cfg.Postgres.Host,
		},
		Databases: dbs,
		Only:      only,
	})
	return m, tools, err
}

// tools returns the configured server's client programs (pg_dump, pg_restore...),
// of major version minMajor or newer.
func (p *Program) tools(ctx context.Context, minMajor int) (postgres.Tools, error) {
	tools, err := postgres.FindTools(ctx, p.cfg.Postgres.BinDir, minMajor)
	if err != nil {
		return postgres.Tools{}, err
	}
	tools.Env = p.cfg.Postgres.Env()
	tools.Database = p.cfg.Postgres.Database
	tools.Logger = p.logger
	return tools, nil
}
