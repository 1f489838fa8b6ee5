"""Server adapters of the benchmark (bench/run.py): the dataset and
pobox, Dovecot and Postfix run privately on loopback."""
