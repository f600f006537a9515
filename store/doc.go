// Package store will persist durable definitions and persistent messages on
// Badger; it is the only package that imports Badger. Until the durability
// work lands, Warren keeps everything in memory.
package store
