//! Checkers for simulator and cluster histories.
