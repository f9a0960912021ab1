#!/usr/bin/env bash
# Print the requests to try once the demo service is up (ids are from the synthetic demo data).
host=${1:-127.0.0.1}; port=${2:-8000}; url="http://$host:$port"
cat <<MSG

==> starting the service on $url (Ctrl-C stops it). In another terminal, try:

curl -s $url/models
curl -s $url/rank -H 'content-type: application/json' -d '{"model": "nrms", "user_id": "U1", "candidates": ["N1", "N2", "N3", "N4"]}'
curl -s $url/recommend -H 'content-type: application/json' -d '{"model": "bert4rec", "history": ["i1", "i2", "i3"], "k": 5}'
curl -s $url/recommend -H 'content-type: application/json' -d '{"model": "convncf", "user_id": "u1", "k": 5}'
curl -s $url/recommend -H 'content-type: application/json' -d '{"model": "nrms", "user_id": "U-new", "k": 5}'   # a user never seen: the fallback
curl -s $url/items -H 'content-type: application/json' -d '{"model": "nrms", "items": [{"item_id": "N-new", "title": "New coach wins the league final"}]}'
curl -s $url/users/U1/events -H 'content-type: application/json' -d '{"model": "nrms", "items": ["N-new"]}'
curl -s $url/readyz
curl -s $url/metrics | head

MSG
