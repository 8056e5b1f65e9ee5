package main

import "github.com/spf13/cobra"

func (p *Program) devCommand() *cobra.Command {
	return &cobra.Command{Use: "dev", Short: "Run the local stack (not implemented yet)"}
}
