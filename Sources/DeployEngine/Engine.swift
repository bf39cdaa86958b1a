// The deployment engine: see Engine.swift.
