#!/usr/bin/env node
// A committed shim: npm links a workspace's bin at install, before `prepare` has built dist/, and skips a target
// that does not exist yet.
import "../dist/bin.js"
