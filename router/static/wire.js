/* wire.js: the JS wire client (protocol v1); being written. */
