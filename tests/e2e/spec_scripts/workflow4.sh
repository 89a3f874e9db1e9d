#!/usr/bin/env bash
# Workflow 4: Cancel Long-Running Workflow
# Copied verbatim from specs/workflow-management-api.md, "Common Workflows".
# tests/e2e/test_spec_scripts.py runs it against a real server and real agents.

# Step 1: Execute workflow
WORKFLOW_ID="456e7890-e89b-12d3-a456-426614174000"
RUN_ID=$(curl -X POST http://localhost:8000/api/v1/workflows/$WORKFLOW_ID/execute \
  -H "Content-Type: application/json" \
  -d '{
    "input_data": {
      "source": "https://api.example.com/large-dataset"
    }
  }' | jq -r '.run_id')

echo "Started run: $RUN_ID"

# Step 2: Wait a bit, then check status
sleep 10
STATUS=$(curl -s http://localhost:8000/api/v1/runs/$RUN_ID | jq -r '.status')
echo "Current status: $STATUS"

# Step 3: Cancel the run
if [[ "$STATUS" == "RUNNING" || "$STATUS" == "PENDING" ]]; then
  echo "Cancelling run..."
  curl -X POST http://localhost:8000/api/v1/runs/$RUN_ID/cancel \
    -H "Content-Type: application/json" \
    -d '{
      "reason": "Dataset too large, need to optimize first"
    }' | jq '{status, cancelled_at, error_message}'
fi

# Step 4: Verify cancellation
curl -s http://localhost:8000/api/v1/runs/$RUN_ID \
  | jq '{status, cancelled_at, cancelled_by, error_message}'
