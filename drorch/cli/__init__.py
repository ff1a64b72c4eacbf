"""Thin click commands: parse, call the library, render through cli.output."""
