#!/usr/bin/env bash
# Workflow 5: Health Check All Agents
# Copied verbatim from specs/workflow-management-api.md, "Common Workflows".
# tests/e2e/test_spec_scripts.py runs it against a real server and real agents.

# Step 1: Get all active agents
echo "Checking health of all active agents..."
AGENTS=$(curl -s "http://localhost:8000/api/v1/agents?status=active" | jq -r '.items[] | .id')

# Step 2: Check health of each agent
for AGENT_ID in $AGENTS; do
  echo "Checking agent: $AGENT_ID"
  
  AGENT_NAME=$(curl -s http://localhost:8000/api/v1/agents/$AGENT_ID | jq -r '.name')
  HEALTH=$(curl -s http://localhost:8000/api/v1/agents/$AGENT_ID/health)
  
  HEALTHY=$(echo $HEALTH | jq -r '.healthy')
  RESPONSE_TIME=$(echo $HEALTH | jq -r '.response_time_ms')
  
  if [[ "$HEALTHY" == "true" ]]; then
    echo "  ✓ $AGENT_NAME is healthy (${RESPONSE_TIME}ms)"
  else
    ERROR=$(echo $HEALTH | jq -r '.error')
    echo "  ✗ $AGENT_NAME is unhealthy: $ERROR"
  fi
done
