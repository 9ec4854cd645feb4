"""Differential privacy: DP-SGD, the accountant, the ledger of DP events and the caps."""
