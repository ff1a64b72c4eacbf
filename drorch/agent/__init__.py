"""The site agent: membership, the observe-decide-act loop, its daemon and control."""
