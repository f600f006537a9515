// Package exchange holds Warren's exchange kinds and their binding matchers:
// a map for direct, a set for fanout, a word trie for topic and a list of
// argument sets for headers; and the pickers, which route a message to one
// destination at most: weighted buckets with jump consistent hashing for
// x-consistent-hash, a modulus for x-modulus-hash, a uniform draw for
// x-random (hash.go).
//
// Matchers are generic over the destination type so that this package never
// imports the queue package: the server routes to queues and to other
// exchanges through the same matcher. Matchers are not safe for concurrent
// use; the owner guards them (the server holds its vhost lock for writing
// while binding and for reading while routing).
package exchange
