#!/usr/bin/env bash
# Workflow 1: Complete Setup and Execution
# Copied verbatim from specs/workflow-management-api.md, "Common Workflows".
# tests/e2e/test_spec_scripts.py runs it against a real server and real agents.

# Step 1: Create agents
EXTRACTOR_ID=$(curl -X POST http://localhost:8000/api/v1/agents \
  -H "Content-Type: application/json" \
  -d '{
    "name": "DataExtractorAgent",
    "url": "http://extractor:8080",
    "description": "Extracts data from external sources"
  }' | jq -r '.id')

TRANSFORMER_ID=$(curl -X POST http://localhost:8000/api/v1/agents \
  -H "Content-Type: application/json" \
  -d '{
    "name": "DataTransformerAgent",
    "url": "http://transformer:8080",
    "description": "Transforms raw data"
  }' | jq -r '.id')

echo "Created agents: $EXTRACTOR_ID, $TRANSFORMER_ID"

# Step 2: Create workflow
WORKFLOW_ID=$(curl -X POST http://localhost:8000/api/v1/workflows \
  -H "Content-Type: application/json" \
  -d '{
    "name": "data-pipeline",
    "description": "ETL pipeline",
    "start_step": "extract",
    "steps": {
      "extract": {
        "id": "extract",
        "agent_name": "DataExtractorAgent",
        "next_step": "transform",
        "input_mapping": {
          "source": "${workflow.input.source}"
        }
      },
      "transform": {
        "id": "transform",
        "agent_name": "DataTransformerAgent",
        "next_step": null,
        "input_mapping": {
          "data": "${extract.output.data}"
        }
      }
    }
  }' | jq -r '.id')

echo "Created workflow: $WORKFLOW_ID"

# Step 3: Execute workflow
RUN_ID=$(curl -X POST http://localhost:8000/api/v1/workflows/$WORKFLOW_ID/execute \
  -H "Content-Type: application/json" \
  -d '{
    "input_data": {
      "source": "https://api.example.com/data"
    }
  }' | jq -r '.run_id')

echo "Started run: $RUN_ID"

# Step 4: Monitor execution
while true; do
  STATUS=$(curl -s http://localhost:8000/api/v1/runs/$RUN_ID | jq -r '.status')
  echo "Run status: $STATUS"
  
  if [[ "$STATUS" == "COMPLETED" || "$STATUS" == "FAILED" || "$STATUS" == "CANCELLED" ]]; then
    break
  fi
  
  sleep 5
done

# Step 5: Get step details
curl http://localhost:8000/api/v1/runs/$RUN_ID/steps | jq '.'
