#!/usr/bin/env python3
"""Writes a large synthetic routing data set for benchmarks, laid out like the
shared data (numbering/carrier/<cc>.txt, routing/*.csv):

- 1,000,000 number ranges: 20 country codes, each with 1,000 short prefixes
  (country code + 3 digits) and 49,000 long ones (country code + 5 digits),
  over 8 networks per country;
- 50 operators;
- 100,000 rules over 1,000 accounts (100 each: a default, two tiers of
  country rules, network rules and prefix rules), plus a few `*` rules;
- no ported numbers.

The output is the same for every run (fixed seed), so figures can be compared.

Usage: python3 benches/synthetic_data.py OUT_DIR
"""

import os
import random
import sys

COUNTRIES = [1, 7, 20, 27, 33, 34, 39, 44, 49, 52, 55, 61, 62, 81, 86, 91, 234, 254, 880, 971]
NETWORKS_PER_COUNTRY = 8
OPERATORS = 50
ACCOUNTS = 1000


def network(rng):
    return f"Net{rng.randrange(NETWORKS_PER_COUNTRY)}"


def write_ranges(carrier_dir, rng):
    os.makedirs(carrier_dir, exist_ok=True)
    for cc in COUNTRIES:
        lines = []
        for short in range(1000):
            lines.append(f"{cc}{short:03d}|{network(rng)}")
        for long in range(0, 98000, 2):
            lines.append(f"{cc}{long:05d}|{network(rng)}")
        with open(os.path.join(carrier_dir, f"{cc}.txt"), "w") as out:
            out.write("\n".join(lines) + "\n")


def write_operators(routing_dir):
    with open(os.path.join(routing_dir, "operators.csv"), "w") as out:
        out.write("id,name,system_id,password,smpp_host,smpp_port,tps_limit,"
                  "alphanumeric_sender,enabled\n")
        for n in range(OPERATORS):
            alpha = "false" if n % 10 == 9 else "true"
            out.write(f"op-syn-{n:02d},Synthetic {n},syn{n:02d},synthetic-{n:02d},"
                      f"smpp{n:02d}.example,2775,{100 + n * 10},{alpha},true\n")


def rule(rid, account, kind, value, tier, rng, sender="any", window=""):
    op = f"op-syn-{rng.randrange(OPERATORS):02d}"
    weight = rng.randrange(1, 101)
    cost = rng.randrange(1000, 20000)
    return f"{rid},{account},{kind},{value},{tier},{op},{weight},{cost},{sender},{window}\n"


def account_rules(account, rng):
    rows = [rule(f"{account}-d", account, "default", "", 1, rng)]
    for cc in COUNTRIES:
        rows.append(rule(f"{account}-c{cc}-1", account, "country", cc, 1, rng))
        rows.append(rule(f"{account}-c{cc}-2", account, "country", cc, 2, rng))
    for cc in COUNTRIES:
        for k in rng.sample(range(NETWORKS_PER_COUNTRY), 2):
            rows.append(rule(f"{account}-n{cc}-{k}", account, "network", f"{cc}:Net{k}", 1, rng))
    for n, cc in enumerate(rng.sample(COUNTRIES, 19)):
        prefix = f"{cc}{rng.randrange(100):02d}"
        window = "22:00-06:00" if n % 5 == 0 else ""
        rows.append(rule(f"{account}-p{n}", account, "prefix", prefix, 1, rng, window=window))
    return rows


def write_rules(routing_dir, rng):
    with open(os.path.join(routing_dir, "routes.csv"), "w") as out:
        out.write("id,account,match_type,match_value,priority,operator_id,weight,"
                  "cost_micros,sender_type,window_utc\n")
        out.write(rule("star-d1", "*", "default", "", 1, rng))
        out.write(rule("star-d2", "*", "default", "", 1, rng))
        for cc in COUNTRIES:
            out.write(rule(f"star-c{cc}", "*", "country", cc, 1, rng))
        for a in range(ACCOUNTS):
            out.writelines(account_rules(f"acct-{a:04d}", rng))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    rng = random.Random(20261204)
    routing_dir = os.path.join(out_dir, "routing")
    os.makedirs(routing_dir, exist_ok=True)
    write_ranges(os.path.join(out_dir, "numbering", "carrier"), rng)
    write_operators(routing_dir)
    write_rules(routing_dir, rng)
    with open(os.path.join(routing_dir, "ported.csv"), "w") as out:
        out.write("e164,network\n")


if __name__ == "__main__":
    main()
