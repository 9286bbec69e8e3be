// Command bootstrap is Hearth's example AWS Lambda function for the sandbox
// tier (lambda contract), written with the unmodified aws-lambda-go library.
// Hearth delivers each HTTP request as an API Gateway v2 (payload format
// 2.0) event and maps the returned response back to HTTP.
//
// Build a static binary named bootstrap, as for Lambda's provided.al2023
// runtime, then deploy the directory:
//
//	CGO_ENABLED=0 go build -o bootstrap . && hearth deploy .
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

func handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	if req.RawPath == "/fail" {
		return events.APIGatewayV2HTTPResponse{}, errors.New("asked to fail")
	}
	lc, _ := lambdacontext.FromContext(ctx)
	name := req.QueryStringParameters["name"]
	if name == "" {
		name = "world"
	}
	body := fmt.Sprintf("Hello, %s! %s %s from %s (request %s)\n", name,
		req.RequestContext.HTTP.Method, req.RawPath, os.Getenv("AWS_LAMBDA_FUNCTION_NAME"), lc.AwsRequestID)
	if req.RequestContext.HTTP.Method == "POST" {
		body = req.Body
	}
	return events.APIGatewayV2HTTPResponse{
		StatusCode: 200,
		Headers:    map[string]string{"Content-Type": "text/plain; charset=utf-8", "X-Example": "go-lambda"},
		Body:       body,
	}, nil
}

func main() { lambda.Start(handle) }
