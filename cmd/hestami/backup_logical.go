package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func (p *Program) pushLogical(cmd *cobra.Command, o pushOptions) error {
	return errors.New("not implemented yet")
}
