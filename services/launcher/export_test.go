package launcher

import "time"

// SetSettleTimeout shortens how long the launcher's bookkeeping after a
// stop may take, so a test can make a shutdown wait outlast it; it
// returns the function that restores it.
func SetSettleTimeout(d time.Duration) (restore func()) {
	old := settleTimeout.Swap(int64(d))
	return func() { settleTimeout.Store(old) }
}
