"""Delivery channels: each turns one notification into one send and reports the outcome."""
