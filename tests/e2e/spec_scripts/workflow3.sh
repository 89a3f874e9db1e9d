#!/usr/bin/env bash
# Workflow 3: Update Workflow Version
# Copied verbatim from specs/workflow-management-api.md, "Common Workflows".
# tests/e2e/test_spec_scripts.py runs it against a real server and real agents.

# Step 1: Get current workflow
WORKFLOW_ID="456e7890-e89b-12d3-a456-426614174000"
echo "Current workflow:"
curl -s http://localhost:8000/api/v1/workflows/$WORKFLOW_ID | jq '{name, version, status}'

# Step 2: Update workflow (increments version)
echo "Updating workflow..."
curl -X PUT http://localhost:8000/api/v1/workflows/$WORKFLOW_ID \
  -H "Content-Type: application/json" \
  -d '{
    "description": "Updated ETL pipeline with validation step",
    "steps": {
      "extract": {
        "id": "extract",
        "agent_name": "DataExtractorAgent",
        "next_step": "validate",
        "input_mapping": {
          "source": "${workflow.input.source}"
        }
      },
      "validate": {
        "id": "validate",
        "agent_name": "DataValidatorAgent",
        "next_step": "transform",
        "input_mapping": {
          "data": "${extract.output.data}"
        }
      },
      "transform": {
        "id": "transform",
        "agent_name": "DataTransformerAgent",
        "next_step": null,
        "input_mapping": {
          "data": "${validate.output.validated_data}"
        }
      }
    }
  }' | jq '{name, version, status}'

# Step 3: View all versions
echo "All versions:"
curl -s "http://localhost:8000/api/v1/workflows/$WORKFLOW_ID/versions" \
  | jq '.items[] | {version, status, created_at}'
