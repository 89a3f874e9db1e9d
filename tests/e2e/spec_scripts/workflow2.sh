#!/usr/bin/env bash
# Workflow 2: Monitor and Retry Failed Runs
# Copied verbatim from specs/workflow-management-api.md, "Common Workflows".
# tests/e2e/test_spec_scripts.py runs it against a real server and real agents.

# Step 1: List failed runs
echo "Finding failed runs..."
curl -s "http://localhost:8000/api/v1/runs?status=FAILED&sort_by=created_at&sort_order=desc" \
  | jq '.items[] | {run_id, workflow_name, error_message, created_at}'

# Step 2: Get details of a specific failed run
RUN_ID="run-789e0123-e89b-12d3-a456-426614174000"
echo "Getting details for run: $RUN_ID"
curl -s http://localhost:8000/api/v1/runs/$RUN_ID | jq '.'

# Step 3: Get step executions to identify failure point
echo "Getting step executions..."
curl -s http://localhost:8000/api/v1/runs/$RUN_ID/steps \
  | jq '.[] | {step_id, status, error_message}'

# Step 4: Retry the failed run
echo "Retrying run..."
curl -X POST http://localhost:8000/api/v1/runs/$RUN_ID/retry \
  -H "Content-Type: application/json" \
  -d '{}' | jq '.'

# Step 5: Monitor retry progress
while true; do
  STATUS=$(curl -s http://localhost:8000/api/v1/runs/$RUN_ID | jq -r '.status')
  echo "Retry status: $STATUS"
  
  if [[ "$STATUS" == "COMPLETED" || "$STATUS" == "FAILED" ]]; then
    break
  fi
  
  sleep 5
done
