; gdnsd zone for tests/bench/compare.py; same names as ../dnsfail/bench.example.com.yaml.
$TTL 300
@       SOA  ns1 hostmaster 1 3600 600 604800 300
@       NS   ns1
@       NS   ns2
@       A    192.0.2.1
ns1     A    192.0.2.53
ns2     A    192.0.2.54
static  A    192.0.2.10
*.wild  A    192.0.2.20
fo   30 DYNA multifo!fo
geo  30 DYNA geoip!geo
