"""Linux packaging: the .deb, its systemd unit, desktop entry and maintainer scripts."""
