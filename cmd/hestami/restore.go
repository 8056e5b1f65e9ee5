package main

import "github.com/spf13/cobra"

func (p *Program) restoreCommand() *cobra.Command {
	return &cobra.Command{Use: "restore", Short: "Restore a backup (not implemented yet)"}
}
