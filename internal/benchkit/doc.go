// Package benchkit is what the project's benchmarks share: the summary
// table each prints, percentiles of latencies, numbers from the
// environment, work run until a benchmark ends, and a lean HTTP client for
// load. Only tests import it.
package benchkit
