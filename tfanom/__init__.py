"""tfanom: semantic anomaly detection by hold-out-class classifiers (Ahmed & Courville, AAAI 2020)."""
